#!/usr/bin/env bash
# Audit a database holding ~1,000,000 intents (the output of scenarios/million.toml, run
# here unless a report directory is given) and print the time per check. Not a test.
#
#   scripts/bench-audit.sh [REPORT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin swarm
DIR="${1:-}"
if [[ -z "$DIR" ]]; then
    DIR="$(mktemp -d)/million"
    target/release/swarm run scenarios/million.toml --no-tui --report-dir "$DIR" >/dev/null 2>&1 || true
fi
INTENTS="$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from intent').fetchone()[0])" "$DIR/swarm.db")"
START=$(date +%s.%N)
target/release/swarm audit --db "sqlite://$DIR/swarm.db" --history "$DIR/history.bin" --json >"$DIR/audit.json" || true
END=$(date +%s.%N)
python3 - "$DIR/audit.json" "$INTENTS" "$START" "$END" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
print(f"intents audited: {int(sys.argv[2])}")
for t in a["timings"]:
    print(f"  {t['phase']:<44} {t['ms']:>8.1f} ms")
print(f"whole audit (process): {float(sys.argv[4]) - float(sys.argv[3]):.2f} s · verdict {a['validity']}")
PY
