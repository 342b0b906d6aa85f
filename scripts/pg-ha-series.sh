#!/usr/bin/env bash
# How often does a failover lose acknowledged commits? Runs scenarios/pg-failover.toml N
# times, each on a fresh three-node Patroni cluster (scripts/pg-ha-up.sh), the leader killed
# with -9 under load, and prints one line per run (audit verdict, acknowledged commits the
# new primary lost as history.lost_commit counts them, leader change and unavailability as
# the report has them) and a total. Not a test: tests/pg_ha.rs checks single runs.
#
#   scripts/pg-ha-series.sh [N] [--sync]      # default: 10 runs, asynchronous replication
#   AGENTS=9000 scripts/pg-ha-series.sh 5
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"
SYNC=()
[[ "${2:-}" == "--sync" ]] && SYNC=(--sync)
AGENTS="${AGENTS:-9000}"
DIR="${SWARM_PG_HA_DIR:-/tmp/swarm-ha-series}"
trap 'scripts/pg-ha-down.sh "$DIR" >/dev/null 2>&1' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cargo build --release --quiet --bin swarm
mode=$([[ ${#SYNC[@]} -gt 0 ]] && echo synchronous || echo asynchronous)
echo "pg-failover × $N, $mode replication, $AGENTS agents, leader killed at 33%"
runs=0 losing=0 lost_total=0 lost_max=0
for i in $(seq "$N"); do
    URL="$(scripts/pg-ha-up.sh "$DIR" "${SYNC[@]}" 2>/dev/null)"
    REPORT="$(mktemp -d)"
    SWARM_PG_HA_DIR="$DIR" CI=true RUST_LOG=error target/release/swarm run scenarios/pg-failover.toml \
        --no-tui --agents "$AGENTS" --db "$URL" --patroni "$(cat "$DIR/patroni")" \
        --report-dir "$REPORT" >/dev/null 2>&1 || true
    python3 - "$REPORT/summary.json" "$i" "$REPORT/lost" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lost = next((c["count"] for c in s["audit"]["checks"] if c["name"] == "history.lost_commit"), None)
f = (s.get("faults") or [{}])[0]
imp = (f.get("impact") or [{}])[0]
print(f"run {sys.argv[2]:>2}: {s['validity']:<8} lost_commit {lost}  committed {s['counters'].get('committed', 0)}"
      f"  leader {f.get('leader_before')} -> {f.get('leader_after')} after {((f.get('leader_elected_ms') or 0) - (f.get('started_ms') or 0)) / 1000:.1f} s"
      f"  unavailable {(imp.get('unavailable_ms') or 0) / 1000:.1f} s  reconnect {imp.get('reconnect_ms')} ms")
open(sys.argv[3], "w").write(f"{lost or 0}\n")
PY
    lost="$(cat "$REPORT/lost")"
    runs=$((runs + 1))
    if [[ "$lost" -gt 0 ]]; then losing=$((losing + 1)); fi
    lost_total=$((lost_total + lost))
    [[ "$lost" -gt "$lost_max" ]] && lost_max=$lost
    rm -rf "$REPORT"
    scripts/pg-ha-down.sh "$DIR" >/dev/null 2>&1
done
echo "runs that lost acknowledged commits: $losing of $runs · lost in all: $lost_total · most in one run: $lost_max"
