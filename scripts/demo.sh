#!/usr/bin/env bash
# Runs mqtt-supervisor on this machine with one demo connection, in the
# foreground; Ctrl-C (SIGINT) stops it gracefully (exit 0).
#
#   1. scripts/deps.sh: PostgreSQL on 127.0.0.1:5432, Mosquitto on :1883;
#   2. creates the database (default mqtt_supervisor) if it is missing;
#   3. builds the release binary (the first time: several minutes) and
#      applies the migrations;
#   4. makes sure connection `demo_site` is there, enabled, for the local
#      broker: adds it, or re-enables and re-points the one an earlier run
#      left, and says which; lists the other rows, which the service starts
#      too when they are enabled;
#   5. prints the `export DATABASE_URL=...` line and the binary's absolute
#      path for the CLI in another terminal, and runs `mqtt-supervisor run`.
#
# Every setting of the service can be overridden from the environment
# (DATABASE_URL, MQTT_HTTP_ADDR, MQTT_INSTANCE_ID, RUST_LOG, ...; see the
# README). The demo's own knobs:
#   DEMO_NAME          connection name            (default demo_site)
#   DEMO_BROKER_HOST   broker of the demo row     (default 127.0.0.1)
#   DEMO_BROKER_PORT                              (default 1883)
#   DEMO_ADMIN_URL     where to CREATE DATABASE   (default: DATABASE_URL with
#                      the database name replaced by `postgres`)
# and, for the tests that run this script (tests/e2e/demo.rs):
#   DEMO_SKIP_DEPS=1         do not run scripts/deps.sh
#   DEMO_BINARY=PATH         use this binary; do not build the release one
#   DEMO_EXIT_AFTER_SETUP=1  exit 0 after printing the lines to try, without
#                            running the service
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

say() { printf 'demo: %s\n' "$*"; }
die() {
    printf 'demo: ERROR: %s\n' "$*" >&2
    exit 1
}

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/mqtt_supervisor}"
# Loopback only for a demo (the service's default is 0.0.0.0:8081).
export MQTT_HTTP_ADDR="${MQTT_HTTP_ADDR:-127.0.0.1:8081}"
DEMO_NAME="${DEMO_NAME:-demo_site}"
DEMO_BROKER_HOST="${DEMO_BROKER_HOST:-127.0.0.1}"
DEMO_BROKER_PORT="${DEMO_BROKER_PORT:-1883}"

if [ "${DEMO_SKIP_DEPS:-0}" = 1 ]; then
    say "not running scripts/deps.sh (DEMO_SKIP_DEPS=1)"
else
    scripts/deps.sh </dev/null
fi

# Database name: the URL's path, without a query string.
url_no_query="${DATABASE_URL%%\?*}"
db_name="${url_no_query##*/}"
case "${url_no_query#*://}" in
*/?*) ;;
*) die "cannot find the database name in DATABASE_URL; expected postgres://user@host:port/dbname" ;;
esac
admin_url="${DEMO_ADMIN_URL:-${url_no_query%/*}/postgres}"

# SQL goes in on stdin so that psql variables (:'v' a literal, :"v" a name)
# quote the values.
psql_run() { psql -X -q -w -v ON_ERROR_STOP=1 "$@"; }
# The URLs are not repeated in messages: they may hold a password.
exists=$(psql_run -tA -v db="$db_name" "$admin_url" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'") ||
    die "cannot connect to PostgreSQL to look for database $db_name (see psql's message above; set DEMO_ADMIN_URL or DATABASE_URL)"
if [ "$exists" = 1 ]; then
    say "database $db_name exists"
else
    say "creating database $db_name"
    psql_run -v db="$db_name" "$admin_url" <<<'CREATE DATABASE :"db"'
fi

if [ -n "${DEMO_BINARY:-}" ]; then
    bin="$DEMO_BINARY"
    say "using $bin (DEMO_BINARY; not building)"
else
    # A cold release build compiles about 300 crates; later runs take seconds.
    say "building the release binary (first time: several minutes on 2 cores)"
    cargo build --release -p mqtt-supervisor
    bin="${CARGO_TARGET_DIR:-target}/release/mqtt-supervisor"
fi
[ -x "$bin" ] || die "$bin was not built"
# Absolute, so that the line printed below works from any directory.
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

say "applying migrations ($bin migrate)"
"$bin" migrate </dev/null

# The application's side of the contract: one row per tenant connection.
# The trigger's NOTIFY makes a running service pick it up within a second.
# A row an earlier run left is made what the demo wants, and the demo says
# what it found and what it did.
demo_vars=(-v name="$DEMO_NAME" -v host="$DEMO_BROKER_HOST" -v port="$DEMO_BROKER_PORT")
# host:port as the demo prints it, with brackets around an IPv6 address.
broker_sql="CASE WHEN broker_host LIKE '%:%' THEN '[' || broker_host || ']' ELSE broker_host END || ':' || broker_port"
want="$DEMO_BROKER_HOST:$DEMO_BROKER_PORT"
if [[ "$DEMO_BROKER_HOST" == *:* ]]; then want="[$DEMO_BROKER_HOST]:$DEMO_BROKER_PORT"; fi

found=$(psql_run -tA -F ' ' "${demo_vars[@]}" "$DATABASE_URL" <<<"SELECT is_enabled, $broker_sql FROM mqtt_connections WHERE name = :'name'") ||
    die "cannot read mqtt_connections"
if [ -z "$found" ]; then
    psql_run "${demo_vars[@]}" "$DATABASE_URL" >/dev/null <<'SQL'
INSERT INTO mqtt_connections (name, broker_host, broker_port)
VALUES (:'name', :'host', :'port'::int);
SQL
    say "added connection $DEMO_NAME -> $want to mqtt_connections"
else
    read -r was_enabled was_broker <<<"$found"
    if [ "$was_enabled" = t ] && [ "$was_broker" = "$want" ]; then
        say "connection $DEMO_NAME -> $want is in mqtt_connections, enabled (left by an earlier run)"
    else
        psql_run "${demo_vars[@]}" "$DATABASE_URL" >/dev/null <<'SQL'
UPDATE mqtt_connections
SET is_enabled = true, broker_host = :'host', broker_port = :'port'::int
WHERE name = :'name';
SQL
        if [ "$was_enabled" != t ] && [ "$was_broker" != "$want" ]; then
            say "$DEMO_NAME was disabled and pointed at $was_broker; re-enabled it and pointed it at $want"
        elif [ "$was_enabled" != t ]; then
            say "$DEMO_NAME was disabled; re-enabled it ($want)"
        else
            say "$DEMO_NAME pointed at $was_broker; pointed it at $want"
        fi
    fi
fi

# Whatever else is in the table runs too when enabled: say so before it does.
others=$(psql_run -tA "${demo_vars[@]}" "$DATABASE_URL" <<SQL
SELECT format('  %s -> %s (%s)', name, $broker_sql,
              CASE WHEN is_enabled THEN 'enabled: the service starts it too'
                   ELSE 'disabled: not started' END)
FROM mqtt_connections WHERE name <> :'name' ORDER BY name;
SQL
) || die "cannot read mqtt_connections"
if [ -n "$others" ]; then
    say "mqtt_connections also holds $(wc -l <<<"$others" | tr -d ' ') other row(s):"
    printf '%s\n' "$others"
fi

if ! timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$DEMO_BROKER_HOST" "$DEMO_BROKER_PORT" 2>/dev/null; then
    say "WARNING: no broker listens on $want; $DEMO_NAME will show as disconnected"
fi

# The CLI in another terminal must use this database, not the service's
# default (postgres://localhost/mqtt_supervisor as your login name). A
# password in the URL is not printed: *** stands in for it.
shown_url="$DATABASE_URL"
after_scheme="${DATABASE_URL#*://}"
authority="${after_scheme%%[/?#]*}"
if [[ "$authority" == *@* ]] && [[ "${authority%@*}" == *:* ]]; then
    shown_url="${DATABASE_URL%%://*}://${authority%%:*}:***@${after_scheme#*@}"
fi
if [[ "$shown_url" =~ [?\&]password= ]]; then
    shown_url=$(sed -E 's/([?&]password=)[^&#]*/\1***/' <<<"$shown_url")
fi
password_note=""
if [ "$shown_url" != "$DATABASE_URL" ]; then password_note="   # put your password in place of ***"; fi
# 'text' for the shell, whatever the text holds.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
# A path as it is when the shell leaves it alone, else quoted.
shell_word() {
    if [[ "$1" =~ ^[A-Za-z0-9_./+:=-]+$ ]]; then printf '%s' "$1"; else quote "$1"; fi
}

http_port="${MQTT_HTTP_ADDR##*:}"
# The status topic as the service computes it ({prefix} is the name here).
status_topic="${MQTT_STATUS_TOPIC:-{prefix\}/backend/status}"
status_topic="${status_topic//\{prefix\}/$DEMO_NAME}"
status_topic="${status_topic//\{name\}/$DEMO_NAME}"
cat <<EOF

In another terminal:
  export DATABASE_URL=$(quote "$shown_url")$password_note
  $(shell_word "$bin") connections list
  curl -s localhost:${http_port}/api/v1/mqtt/health/?verbose=true
  mosquitto_sub -h ${DEMO_BROKER_HOST} -p ${DEMO_BROKER_PORT} -v -t '${status_topic}'
  psql "\$DATABASE_URL" -c 'TABLE mqtt_connection_state'

EOF
if [ "${DEMO_EXIT_AFTER_SETUP:-0}" = 1 ]; then
    say "set up; not starting the service (DEMO_EXIT_AFTER_SETUP=1)"
    exit 0
fi
cat <<EOF
Starting mqtt-supervisor; Ctrl-C stops it gracefully.

EOF
exec "$bin" run
