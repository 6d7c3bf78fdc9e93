#!/usr/bin/env bash
# The whole test suite of mqtt-supervisor, as CI runs it (.ci/run):
#
#   1. scripts/deps.sh: PostgreSQL on 127.0.0.1:5432, Mosquitto, Rust;
#   2. cargo fmt --check and cargo clippy -D warnings (fail fast);
#   3. cargo build of every target, so target/debug/mqtt-supervisor exists
#      for the end-to-end tests (they run the real binary next to them);
#   4. the tests: cargo nextest (settings in .config/nextest.toml: parallelism
#      and a timeout that ends a hung test) plus the doctests, or cargo test
#      when cargo-nextest is not installed.
#
# Tests use DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# only to create one database per test (sqlx::test). TEST_LOG=1 shows the
# service's output in the end-to-end tests. Extra arguments go to the test
# runner, e.g. `scripts/test.sh -E 'test(lifecycle)'` with nextest.
#
# Exits non-zero on any failure. Needs no stdin and no terminal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "dependencies (scripts/deps.sh)"
scripts/deps.sh </dev/null

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

for component in fmt clippy; do
    if ! cargo "$component" --version >/dev/null 2>&1; then
        echo "test.sh: cargo $component is missing: rustup component add ${component/fmt/rustfmt}" >&2
        exit 1
    fi
done

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets

failed=0
if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doctests; run them first so that nextest's
    # summary of every test is the last thing printed.
    step "cargo test --workspace --doc"
    cargo test --workspace --doc </dev/null || failed=1
    step "cargo nextest run --workspace --no-fail-fast"
    cargo nextest run --workspace --no-fail-fast "$@" </dev/null || failed=1
else
    step "cargo test --workspace --no-fail-fast (cargo-nextest is not installed)"
    # Without nextest nothing ends a hung test: bound the whole run.
    timeout --kill-after=30s "${TEST_TIMEOUT:-45m}" \
        cargo test --workspace --no-fail-fast "$@" </dev/null || failed=1
fi

elapsed=$((SECONDS - started))
if [ "$failed" -ne 0 ]; then
    printf '\ntest.sh: FAILED after %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60)) >&2
    exit 1
fi
printf '\ntest.sh: all checks passed in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
