#!/usr/bin/env bash
# Run every check and test: fmt, clippy, and the test suite against real SQLite, a real
# PostgreSQL (started here with scripts/pg-up.sh; installed with apt-get if missing) and a
# headless Chromium for report.html (installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium checks report.html in a real browser; tmux drives the dashboard like an operator;
# Node and Python run the foreign checkout servers.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
# Independent implementations of the contract the tests judge (tests/servers/).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Live observability (tests/observe.rs): a real Prometheus, OCR of Mission Control's
# screenshot, and npm for the pinned browser driver.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The Patroni cluster of tests/pg_ha.rs (scripts/pg-ha-up.sh), installed here once rather
# than by each test's cluster at the same moment.
command -v patroni >/dev/null 2>&1 || missing+=(patroni)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# The documentation's examples (README.md and docs/*.md, run by tests/readme.rs) use curl.
command -v curl >/dev/null 2>&1 || missing+=(curl)
# …and openssl (the CLI) makes the certificate of the HTTPS example in docs/endpoints.md.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "test.sh: installing ${missing[*]}" >&2
    if [[ "$(id -u)" -ne 0 ]]; then SUDO=sudo; else SUDO=""; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

# Published idempotency middlewares (npm, PyPI), pinned, into tests/middleware/ only; and
# the pinned browser driver of Mission Control's test (the browser is Debian's Chromium).
bash tests/middleware/setup.sh >&2
(cd tests/web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

export SWARM_PG_DIR="${SWARM_PG_DIR:-/tmp/swarm-pg-test}"
SWARM_TEST_PG_URL="$(scripts/pg-up.sh "$SWARM_PG_DIR")"
export SWARM_TEST_PG_URL
trap 'scripts/pg-down.sh "$SWARM_PG_DIR" 2>/dev/null' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "test.sh: PostgreSQL at $SWARM_TEST_PG_URL" >&2

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
LOG="$(mktemp)"
cargo test --no-fail-fast -- --test-threads="${SWARM_TEST_THREADS:-2}" 2>&1 | tee "$LOG"
# The dashboard in a real terminal (tmux): press f, see the fault, finish valid.
if scripts/tui-demo.sh target/debug/swarm 2>&1 | tee -a "$LOG"; then
    echo "test result: ok. 1 passed; 0 failed; (scripts/tui-demo.sh)" >>"$LOG"
else
    echo "test result: FAILED. 0 passed; 1 failed; (scripts/tui-demo.sh)" >>"$LOG"
fi
# The fuzzer: Schemathesis against swarm serve's own OpenAPI document, then an audit.
if scripts/fuzz-serve.sh target/debug/swarm 2>&1 | tee -a "$LOG"; then
    echo "test result: ok. 1 passed; 0 failed; (scripts/fuzz-serve.sh)" >>"$LOG"
else
    echo "test result: FAILED. 0 passed; 1 failed; (scripts/fuzz-serve.sh)" >>"$LOG"
fi
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "swarm: %d passed, %d failed\n", p, f; exit (f > 0 || p == 0) }' "$LOG"
rm -f "$LOG"
