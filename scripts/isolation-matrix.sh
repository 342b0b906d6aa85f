#!/usr/bin/env bash
# Which isolation level does the kernel need? The contention and mandates scenarios on
# PostgreSQL under READ COMMITTED, REPEATABLE READ and SERIALIZABLE, with the reference
# kernel (conditional updates) and two naive ones (stock read then written back; the cap
# decided from a SUM over shards, the shard written back), one fresh database per run,
# each audited as any run is. Prints one table. Not a test (tests/isolation.rs runs it small).
#
#   scripts/isolation-matrix.sh                 # PostgreSQL from scripts/pg-up.sh
#   SWARM_TEST_PG_URL=postgres://… AGENTS=2000 scripts/isolation-matrix.sh
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'exit 130' INT
trap 'exit 143' TERM
cargo build --release --quiet --bin swarm
. scripts/bench/machine.sh
bench_machine swarm postgres
URL="${SWARM_TEST_PG_URL:-}"
if [[ -z "$URL" ]]; then
    DIR="${SWARM_PG_DIR:-/tmp/swarm-pg-matrix}"
    URL="$(scripts/pg-up.sh "$DIR")"
    trap 'scripts/pg-down.sh "$DIR" >/dev/null 2>&1' EXIT
fi
ARGS=()
[[ -n "${AGENTS:-}" ]] && ARGS=(--agents "$AGENTS")
RUST_LOG=error target/release/swarm selftest --isolation-matrix --db "$URL" \
    --scenario scenarios/contention.toml --scenario scenarios/mandates.toml "${ARGS[@]}"
