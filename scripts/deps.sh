#!/usr/bin/env bash
# Makes a Debian/Ubuntu machine ready to build, test and run mqtt-supervisor:
#
#   - PostgreSQL server + client, running and answering on 127.0.0.1:5432,
#     where user `postgres` logs in without a password (trust, see below);
#   - the PostgreSQL server's programs (initdb, pg_ctl) even when another
#     PostgreSQL already answers on that port: the TLS tests start private
#     clusters from them (tests/src/pg_tls.rs, as user `postgres` via
#     runuser when run as root);
#   - Mosquitto + mosquitto-clients (the tests start private brokers from the
#     `mosquitto` binary and use mosquitto_passwd; the system broker on
#     127.0.0.1:1883 is only for scripts/demo.sh);
#   - RabbitMQ (Debian's rabbitmq-server, with its MQTT plugin, and epmd
#     from Erlang): the tests start private nodes from
#     /usr/lib/rabbitmq/bin (tests/src/rabbitmq.rs). Installing it does
#     not start the system service: a temporary policy-rc.d denies it
#     (when the machine has no policy-rc.d of its own; Docker images have
#     one that denies every start);
#   - what the end-to-end tests run besides those: supervisord and
#     supervisorctl (the deployment test drives the repository's
#     supervisord.conf), openssl (test certificates), kill (procps);
#   - a C compiler (ring, the TLS crypto crate, compiles C code);
#   - amqtt, a Python MQTT broker some tests start (tests/src/amqtt.rs):
#     amqtt==0.12.1 from PyPI in a virtual environment at
#     target/brokers-venv (git-ignored, next to the build; `cargo clean`
#     removes it and this script makes it again, in about 20 s), created
#     with python3 -m venv (python3-venv on Debian/Ubuntu);
#   - Schemathesis, which tests an HTTP API against its OpenAPI document
#     with generated requests (tests/e2e/api_schema.rs runs it against the
#     REST API): schemathesis==4.32.5 from PyPI in a virtual environment at
#     target/schemathesis-venv (git-ignored, made again after `cargo clean`,
#     in about 20 s), the same way as amqtt's (it needs Python 3.11 or
#     newer);
#   - for the monitor page's browser test (tests/browser/monitor.mjs, run
#     by tests/e2e/monitor_page.rs): Debian's Chromium (/usr/bin/chromium,
#     with fonts-liberation for legible screenshots), Node.js and npm
#     (Debian's nodejs + npm when npm is missing; playwright-core wants
#     Node.js 20 or newer), and playwright-core at the version pinned in
#     tests/browser/package-lock.json, installed there by `npm ci` into
#     tests/browser/node_modules (git-ignored). playwright-core drives that
#     system Chromium: it downloads no browser of its own;
#   - the Rust toolchain (cargo), which this script cannot install: it fails
#     with a clear message instead.
#
# Idempotent and non-interactive: it installs only what is missing (running
# `apt-get update` only then), starts only what is not running, and never
# reads stdin. Safe to run on a machine where everything already runs.
#
# Environment:
#   DEPS_PG_PORT=5432               the local PostgreSQL cluster's port (the
#                                   tests' DATABASE_URL must then name it too)
#   DEPS_SKIP_MOSQUITTO_SERVICE=1   do not start the system broker on :1883
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# C.UTF-8 always exists: the cluster the postgresql package creates must not
# fail on (and perl must not warn about) a LANG whose locale is not installed.
export LC_ALL=C.UTF-8
# Debian/Ubuntu put mosquitto, pg_ctlcluster's helpers etc. in sbin, which a
# non-root user's PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PG_PORT="${DEPS_PG_PORT:-5432}"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Keep in step with AMQTT_VERSION in tests/src/amqtt.rs.
AMQTT_VERSION=0.12.1
AMQTT_VENV="$REPO/target/brokers-venv"
# Keep in step with SCHEMATHESIS_VERSION in tests/e2e/api_schema.rs.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="$REPO/target/schemathesis-venv"
PG_HOST=127.0.0.1
MQTT_PORT=1883

say() { printf 'deps: %s\n' "$*"; }
warn() { printf 'deps: WARNING: %s\n' "$*" >&2; }
die() {
    printf 'deps: ERROR: %s\n' "$*" >&2
    exit 1
}

# Root, or passwordless sudo for the few commands that need it.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}
as_postgres() { as_root runuser -u postgres -- "$@" </dev/null; }

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's
# /dev/tcp, so no dependency on ss/netstat/nc).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

have() { type -P "$1" >/dev/null 2>&1; }  # a program on PATH, not a shell builtin

# ---------------------------------------------------------------- packages --
# Judged by the programs, not by package names: a PostgreSQL installed as
# `postgresql-15` (without the `postgresql` metapackage) counts.
pg_server_installed() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null &&
        compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
pg_already_answers=false
if have pg_isready && pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3 </dev/null; then
    pg_already_answers=true
fi
# A server already answering on the port (a local cluster, or a CI service
# container) is used as it is; the server package is needed all the same,
# for the private TLS clusters the tests start.
if ! pg_server_installed; then
    missing+=(postgresql)
fi
if ! have psql || ! have pg_isready; then missing+=(postgresql-client); fi
if ! have mosquitto; then missing+=(mosquitto); fi
if ! have mosquitto_sub || ! have mosquitto_pub || ! have mosquitto_passwd; then
    missing+=(mosquitto-clients)
fi
# The Debian package also installs a system supervisord service (idle, no
# programs); the tests run their own supervisord from the repository's conf.
if ! have supervisord || ! have supervisorctl; then missing+=(supervisor); fi
# The real script, not only Debian's /usr/sbin wrapper (which the tests avoid:
# as root it switches to the `rabbitmq` user).
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && ! have rabbitmq-server; then
    missing+=(rabbitmq-server)
fi
if ! have epmd; then missing+=(erlang-base); fi
if ! have openssl; then missing+=(openssl); fi
if ! have kill; then missing+=(procps); fi
if ! have runuser; then missing+=(util-linux); fi
if ! have cc; then missing+=(gcc libc6-dev); fi
# The browser test: the path playwright-core is told to launch, and npm to
# install playwright-core.
if [ ! -x /usr/bin/chromium ]; then missing+=(chromium fonts-liberation); fi
if ! have npm; then missing+=(nodejs npm); fi

# True when the venv has the pinned amqtt (its version as pip recorded it).
amqtt_ready() {
    [ -x "$AMQTT_VENV/bin/amqtt" ] &&
        [ "$("$AMQTT_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("amqtt"))' 2>/dev/null </dev/null)" = "$AMQTT_VERSION" ]
}
# True when the venv has the pinned schemathesis.
schemathesis_ready() {
    [ -x "$SCHEMATHESIS_VENV/bin/schemathesis" ] &&
        [ "$("$SCHEMATHESIS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null </dev/null)" = "$SCHEMATHESIS_VERSION" ]
}
# Debian/Ubuntu ship venv without ensurepip (python3 -m venv then fails to
# install pip) until python3-venv is installed.
if ! amqtt_ready || ! schemathesis_ready; then
    if ! have python3; then
        missing+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1 </dev/null; then
        missing+=(python3-venv)
    fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
    have apt-get || die "missing ${missing[*]} and no apt-get: install them by hand"
    say "installing ${missing[*]} (apt-get update first)"
    # Wait for another apt/dpkg run (unattended-upgrades, a parallel job)
    # instead of failing on its lock.
    apt_opts=(-q -o DPkg::Lock::Timeout=300)
    as_root apt-get "${apt_opts[@]}" update </dev/null
    # With a server already answering on the port, the package's own cluster
    # (`main`, created and started on the next free port) would be a second
    # server nobody uses: suppress it for this installation only, through
    # the drop-in directory createcluster.conf includes.
    drop_in_dir=/etc/postgresql-common/createcluster.d
    drop_in="$drop_in_dir/zz-mqtt-supervisor-deps.conf"
    if $pg_already_answers && [[ " ${missing[*]} " == *" postgresql "* ]]; then
        say "PostgreSQL already answers on port $PG_PORT: installing the server without creating a cluster"
        as_root install -d -m 0755 "$drop_in_dir"
        printf 'create_main_cluster = false\n' | as_root tee "$drop_in" >/dev/null
    fi
    # The package's postinst starts the system node (invoke-rc.d); the
    # tests start private nodes instead, so deny that start for this
    # installation only. A policy-rc.d the machine already has stays as it
    # is.
    policy=/usr/sbin/policy-rc.d
    policy_added=false
    if [[ " ${missing[*]} " == *" rabbitmq-server "* ]] && ! as_root test -e "$policy"; then
        say "RabbitMQ: installing without starting the system node (temporary $policy)"
        printf '#!/bin/sh\n# mqtt-supervisor scripts/deps.sh (temporary)\n[ "$1" = rabbitmq-server ] && exit 101\nexit 0\n' |
            as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        policy_added=true
    fi
    install_status=0
    as_root env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
        apt-get "${apt_opts[@]}" install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null || install_status=$?
    if $policy_added; then as_root rm -f "$policy"; fi
    if as_root test -e "$drop_in"; then
        as_root rm -f "$drop_in"
        as_root rmdir --ignore-fail-on-non-empty "$drop_in_dir"
    fi
    [ "$install_status" -eq 0 ] || die "apt-get install ${missing[*]} failed"
else
    say "packages: PostgreSQL (server and client), Mosquitto (+ clients), RabbitMQ, supervisor, openssl, runuser, a C compiler, python3, Chromium and npm are installed"
fi

# -------------------------------------------------------------- PostgreSQL --
systemd_running() { [ -d /run/systemd/system ]; }

# pg_ctlcluster redirects to systemctl when systemd runs; in a container
# without systemd (PID 1 is something else) it must not.
pg_ctl() {
    local action=$1
    if systemd_running; then
        as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" "$action" </dev/null
    else
        as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" "$action" </dev/null
    fi
}

PG_VERSION=""
PG_CLUSTER=""
# The local cluster on $PG_PORT, if any: "version name status".
find_cluster() {
    have pg_lsclusters || return 0
    pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2, $4; exit }'
}

if ! $pg_already_answers; then
    read -r PG_VERSION PG_CLUSTER pg_status < <(find_cluster; echo) || true
    if [ -z "$PG_VERSION" ]; then
        # The package normally creates cluster `main`; create it when it did
        # not (createcluster.conf with create_main_cluster = false, or a
        # cluster removed by hand). Use the newest installed server.
        PG_VERSION=$(find /usr/lib/postgresql -path '*/bin/postgres' 2>/dev/null |
            awk -F/ '{ print $5 }' | sort -V | tail -n 1 || true)
        [ -n "$PG_VERSION" ] || die "no PostgreSQL server found under /usr/lib/postgresql"
        PG_CLUSTER=main
        if [ -d "/etc/postgresql/$PG_VERSION/main" ]; then
            die "cluster $PG_VERSION/main exists but not on port $PG_PORT (see pg_lsclusters); set DEPS_PG_PORT or change its port"
        fi
        say "creating PostgreSQL cluster $PG_VERSION/main on port $PG_PORT"
        as_root env LC_ALL=C.UTF-8 pg_createcluster --port "$PG_PORT" "$PG_VERSION" main </dev/null
        pg_status=down
    fi
    # /run is empty after a container restart; pg_ctlcluster expects this.
    as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    case "${pg_status:-down}" in
    online*) ;;
    *)
        say "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
        pg_ctl start
        ;;
    esac
fi

printf 'deps: waiting for PostgreSQL on %s:%s ' "$PG_HOST" "$PG_PORT"
for _ in $(seq 1 60); do
    if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 </dev/null; then break; fi
    printf '.'
    sleep 0.5
done
if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 </dev/null; then
    echo
    die "PostgreSQL does not answer on $PG_HOST:$PG_PORT (see /var/log/postgresql/)"
fi
echo ' ready'

# The tests and the demo connect as postgres@127.0.0.1 without a password.
pg_login_ok() {
    PGCONNECT_TIMEOUT=5 psql -X -q -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres \
        -tAc 'SELECT 1' </dev/null >/dev/null 2>&1
}

HBA_MARK='# mqtt-supervisor scripts/deps.sh: trust on loopback'
if pg_login_ok; then
    say "PostgreSQL: postgres@$PG_HOST:$PG_PORT logs in without a password"
else
    if [ -z "$PG_VERSION" ]; then
        read -r PG_VERSION PG_CLUSTER _ < <(find_cluster; echo) || true
    fi
    if [ -z "$PG_VERSION" ]; then
        warn "the PostgreSQL server on $PG_HOST:$PG_PORT is not a local cluster this script manages," \
            "and postgres cannot log in without a password: set DATABASE_URL with credentials"
    else
        hba=$(as_postgres psql -X -p "$PG_PORT" -tAc 'SHOW hba_file' 2>/dev/null || true)
        [ -n "$hba" ] || hba="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/pg_hba.conf"
        if ! as_root grep -qF "$HBA_MARK" "$hba"; then
            # FOR A DEVELOPMENT OR TEST MACHINE ONLY: any local process may
            # then log in as any user, postgres included, over 127.0.0.1 and
            # ::1. Debian's default is peer (socket) and scram-sha-256 (TCP).
            # pg_hba.conf is read top-down and the first match wins, so the
            # lines go first; the rest of the file stays as it was.
            say "PostgreSQL: allowing passwordless (trust) logins on 127.0.0.1/::1 in $hba (dev/test machine only)"
            tmp=$(mktemp)
            {
                echo "$HBA_MARK (dev/test machine only)"
                echo 'host    all    all    127.0.0.1/32    trust'
                echo 'host    all    all    ::1/128         trust'
                echo
                as_root cat "$hba"
            } >"$tmp"
            as_root install -o postgres -g postgres -m 0640 "$tmp" "$hba"
            rm -f "$tmp"
        fi
        pg_ctl reload
        sleep 1
        pg_login_ok || die "postgres still cannot log in on $PG_HOST:$PG_PORT; check $hba"
        say "PostgreSQL: postgres@$PG_HOST:$PG_PORT logs in without a password"
    fi
fi

# --------------------------------------------------------------- Mosquitto --
if [ "${DEPS_SKIP_MOSQUITTO_SERVICE:-0}" = 1 ]; then
    say "Mosquitto: not starting the system broker (DEPS_SKIP_MOSQUITTO_SERVICE=1)"
elif port_open "$MQTT_PORT"; then
    say "Mosquitto: a broker listens on 127.0.0.1:$MQTT_PORT"
else
    say "Mosquitto: starting the system broker on 127.0.0.1:$MQTT_PORT (used by scripts/demo.sh)"
    if systemd_running; then
        as_root systemctl start mosquitto </dev/null || true
    else
        # The Debian config writes its pid file and log here; /run is empty
        # after a container restart.
        if id mosquitto >/dev/null 2>&1; then
            as_root install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto
        fi
        as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf </dev/null || true
    fi
    for _ in $(seq 1 20); do
        port_open "$MQTT_PORT" && break
        sleep 0.25
    done
    if port_open "$MQTT_PORT"; then
        say "Mosquitto: listening on 127.0.0.1:$MQTT_PORT"
    else
        # Only the demo needs it; the tests run their own brokers.
        warn "Mosquitto did not start on 127.0.0.1:$MQTT_PORT (see /var/log/mosquitto/mosquitto.log); the demo needs it, the tests do not"
    fi
fi

# ------------------------------------------------------------------- amqtt --
if amqtt_ready; then
    say "amqtt: $AMQTT_VERSION in $AMQTT_VENV"
else
    amqtt_started=$SECONDS
    # A venv that python3 -m venv left without pip (no ensurepip) is useless.
    if [ -f "$AMQTT_VENV/pyvenv.cfg" ] && [ ! -x "$AMQTT_VENV/bin/pip" ]; then
        rm -rf "$AMQTT_VENV"
    fi
    if [ ! -x "$AMQTT_VENV/bin/pip" ]; then
        say "amqtt: creating a virtual environment in $AMQTT_VENV"
        mkdir -p "$(dirname "$AMQTT_VENV")"
        python3 -m venv "$AMQTT_VENV" </dev/null ||
            die "python3 -m venv $AMQTT_VENV failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    say "amqtt: installing amqtt==$AMQTT_VERSION from PyPI"
    "$AMQTT_VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
        "amqtt==$AMQTT_VERSION" </dev/null ||
        die "pip install amqtt==$AMQTT_VERSION failed (it needs Python 3.10 or newer, this is $(python3 --version 2>&1), and access to PyPI)"
    amqtt_ready || die "amqtt $AMQTT_VERSION is not in $AMQTT_VENV after pip install"
    say "amqtt: $AMQTT_VERSION ready in $AMQTT_VENV ($((SECONDS - amqtt_started)) s)"
fi

# ------------------------------------------------------------ schemathesis --
if schemathesis_ready; then
    say "schemathesis: $SCHEMATHESIS_VERSION in $SCHEMATHESIS_VENV"
else
    schemathesis_started=$SECONDS
    # A venv that python3 -m venv left without pip (no ensurepip) is useless.
    if [ -f "$SCHEMATHESIS_VENV/pyvenv.cfg" ] && [ ! -x "$SCHEMATHESIS_VENV/bin/pip" ]; then
        rm -rf "$SCHEMATHESIS_VENV"
    fi
    if [ ! -x "$SCHEMATHESIS_VENV/bin/pip" ]; then
        say "schemathesis: creating a virtual environment in $SCHEMATHESIS_VENV"
        mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
        python3 -m venv "$SCHEMATHESIS_VENV" </dev/null ||
            die "python3 -m venv $SCHEMATHESIS_VENV failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    say "schemathesis: installing schemathesis==$SCHEMATHESIS_VERSION from PyPI"
    "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
        "schemathesis==$SCHEMATHESIS_VERSION" </dev/null ||
        die "pip install schemathesis==$SCHEMATHESIS_VERSION failed (it needs Python 3.11 or newer, this is $(python3 --version 2>&1), and access to PyPI)"
    schemathesis_ready || die "schemathesis $SCHEMATHESIS_VERSION is not in $SCHEMATHESIS_VENV after pip install"
    say "schemathesis: $SCHEMATHESIS_VERSION ready in $SCHEMATHESIS_VENV ($((SECONDS - schemathesis_started)) s)"
fi

# ------------------------------------------------------------ browser test --
BROWSER_DIR="$REPO/tests/browser"
# The playwright-core in node_modules, if it is the version the lockfile pins
# (an older checkout's node_modules would drive the page with another API).
playwright_version() {
    (cd "$BROWSER_DIR" && node -e '
        const fs = require("fs");
        const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
        const want = lock.packages["node_modules/playwright-core"].version;
        const have = JSON.parse(fs.readFileSync("node_modules/playwright-core/package.json", "utf8")).version;
        if (have !== want) process.exit(1);
        console.log(have);
    ') 2>/dev/null </dev/null
}
if version=$(playwright_version); then
    chromium=$(/usr/bin/chromium --version 2>/dev/null </dev/null | sed 's/ built on .*//' || true)
    say "browser test: playwright-core $version in tests/browser, ${chromium:-Chromium} at /usr/bin/chromium"
else
    have npm || die "npm is missing: install Node.js 20 or newer with npm, then run this again"
    say "browser test: installing playwright-core in tests/browser (npm ci)"
    (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error) </dev/null ||
        die "npm ci in $BROWSER_DIR failed (it needs the npm registry; playwright-core needs Node.js 20 or newer, this is $(node --version 2>/dev/null || echo 'no node'))"
    version=$(playwright_version) || die "playwright-core is not in $BROWSER_DIR/node_modules after npm ci"
    say "browser test: playwright-core $version ready in tests/browser"
fi

# -------------------------------------------------------------------- Rust --
if ! have cargo && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! have cargo; then
    die "cargo is not installed. Install Rust 1.94 or newer with rustup (https://rustup.rs), with the rustfmt and clippy components, then run this again."
fi
say "Rust: $(cargo --version)"
if cargo nextest --version >/dev/null 2>&1; then
    say "cargo-nextest: $(cargo nextest --version 2>/dev/null | head -n 1) (scripts/test.sh uses it)"
else
    say "cargo-nextest: not installed (scripts/test.sh falls back to cargo test)"
fi
say "done"
