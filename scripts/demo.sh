#!/usr/bin/env bash
# Runs mqtt-supervisor on this machine with one demo connection, in the
# foreground; Ctrl-C (SIGINT) stops it gracefully (exit 0).
#
#   1. scripts/deps.sh: PostgreSQL on 127.0.0.1:5432, Mosquitto on :1883;
#   2. creates the database (default mqtt_supervisor) if it is missing;
#   3. builds the release binary and applies the migrations;
#   4. adds connection `demo_site` for the local broker, if not there;
#   5. runs `mqtt-supervisor run`.
#
# Every setting of the service can be overridden from the environment
# (DATABASE_URL, MQTT_HTTP_ADDR, MQTT_INSTANCE_ID, RUST_LOG, ...; see the
# README). The demo's own knobs:
#   DEMO_NAME          connection name            (default demo_site)
#   DEMO_BROKER_HOST   broker of the demo row     (default 127.0.0.1)
#   DEMO_BROKER_PORT                              (default 1883)
#   DEMO_ADMIN_URL     where to CREATE DATABASE   (default: DATABASE_URL with
#                      the database name replaced by `postgres`)
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

scripts/deps.sh </dev/null

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
exists=$(psql_run -tA -v db="$db_name" "$admin_url" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'") ||
    die "cannot connect to PostgreSQL with ${admin_url} (set DEMO_ADMIN_URL or DATABASE_URL)"
if [ "$exists" = 1 ]; then
    say "database $db_name exists"
else
    say "creating database $db_name"
    psql_run -v db="$db_name" "$admin_url" <<<'CREATE DATABASE :"db"'
fi

say "building the release binary (cargo build --release -p mqtt-supervisor)"
cargo build --release -p mqtt-supervisor
bin="${CARGO_TARGET_DIR:-target}/release/mqtt-supervisor"
[ -x "$bin" ] || die "$bin was not built"

say "applying migrations ($bin migrate)"
"$bin" migrate </dev/null

# The application's side of the contract: one row per tenant connection.
# The trigger's NOTIFY makes a running service pick it up within a second.
psql_run -v name="$DEMO_NAME" -v host="$DEMO_BROKER_HOST" -v port="$DEMO_BROKER_PORT" \
    "$DATABASE_URL" >/dev/null <<'SQL'
INSERT INTO mqtt_connections (name, broker_host, broker_port)
VALUES (:'name', :'host', :'port'::int)
ON CONFLICT (name) DO NOTHING;
SQL
say "connection $DEMO_NAME -> $DEMO_BROKER_HOST:$DEMO_BROKER_PORT is in mqtt_connections"

if [ "$DEMO_BROKER_HOST:$DEMO_BROKER_PORT" = "127.0.0.1:1883" ] &&
    ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    say "WARNING: no broker listens on 127.0.0.1:1883; $DEMO_NAME will show as disconnected"
fi

http_port="${MQTT_HTTP_ADDR##*:}"
# The status topic as the service computes it ({prefix} is the name here).
status_topic="${MQTT_STATUS_TOPIC:-{prefix\}/backend/status}"
status_topic="${status_topic//\{prefix\}/$DEMO_NAME}"
status_topic="${status_topic//\{name\}/$DEMO_NAME}"
cat <<EOF

In another terminal:
  curl -s localhost:${http_port}/api/v1/mqtt/health/?verbose=true
  mosquitto_sub -h ${DEMO_BROKER_HOST} -p ${DEMO_BROKER_PORT} -v -t '${status_topic}'
  psql ${DATABASE_URL} -c 'TABLE mqtt_connection_state'

Starting mqtt-supervisor; Ctrl-C stops it gracefully.

EOF
exec "$bin" run
