#!/usr/bin/env bash
# Audit a database holding ~1,000,000 intents (the output of scenarios/million.toml, run
# here unless a report directory is given) and print the time per check and the whole
# audit's median over ROUNDS runs. Not a test.
#
#   scripts/bench-audit.sh [REPORT_DIR]
#   BASELINE=/path/to/older/swarm scripts/bench-audit.sh [REPORT_DIR]   # before/after, alternating rounds
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin swarm
. scripts/bench/machine.sh
bench_machine swarm sqlite
DIR="${1:-}"
ROUNDS="${ROUNDS:-5}"
if [[ -z "$DIR" ]]; then
    MADE="$(mktemp -d)"
    trap 'rm -rf "$MADE"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    DIR="$MADE/million"
    target/release/swarm run scenarios/million.toml --no-tui --report-dir "$DIR" >/dev/null 2>&1 || true
fi
INTENTS="$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from intent').fetchone()[0])" "$DIR/swarm.db")"
# One audit by binary $1; prints its wall seconds; its JSON goes to $2.
audit_once() {
    local start end
    start=$(date +%s.%N)
    "$1" audit --db "sqlite://$DIR/swarm.db" --history "$DIR/history.bin" --json >"$2" || true
    end=$(date +%s.%N)
    python3 -c "print(f'{float(\"$end\") - float(\"$start\"):.3f}')"
}
NEW=() OLD=()
for _ in $(seq "$ROUNDS"); do
    NEW+=("$(audit_once target/release/swarm "$DIR/audit.json")")
    if [[ -n "${BASELINE:-}" ]]; then
        OLD+=("$(audit_once "$BASELINE" "$DIR/audit-baseline.json")")
    fi
done
python3 - "$DIR/audit.json" "$INTENTS" "${NEW[*]}" "${OLD[*]:-}" <<'PY'
import json, statistics, sys
a = json.load(open(sys.argv[1]))
print(f"intents audited: {int(sys.argv[2])}")
for t in a["timings"]:
    print(f"  {t['phase']:<60} {t['ms']:>8.1f} ms")
new = [float(x) for x in sys.argv[3].split()]
print(f"whole audit (process), median of {len(new)}: {statistics.median(new):.2f} s "
      f"(min {min(new):.2f}, max {max(new):.2f}) · verdict {a['validity']}")
if sys.argv[4].strip():
    old = [float(x) for x in sys.argv[4].split()]
    ratios = [n / o for n, o in zip(new, old)]
    print(f"baseline, median of {len(old)}: {statistics.median(old):.2f} s · "
          f"ratio this/baseline, median of pairs: {statistics.median(ratios):.2f}")
PY
