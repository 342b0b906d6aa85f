#!/usr/bin/env bash
# The main job as a benchmark: `swarm run scenarios/million.toml --no-tui` on the embedded
# default, next to the bare one-transaction-per-purchase rusqlite loop (same stock, same
# buckets, same mandates, mostly declined), measured in the same script. Prints wall time,
# agents/s, purchases/s, peak RSS and the ratio to the bare loop. Not a test.
#
#   scripts/bench-million.sh [SCENARIO]     # BARE_PURCHASES=200000
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO="${1:-scenarios/million.toml}"
BARE_PURCHASES="${BARE_PURCHASES:-200000}"

cargo build --release --quiet --bin swarm --examples
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

bare="$(target/release/examples/bench_kernel bare "$WORK/bare.db" 100 16 10000 10000 "$BARE_PURCHASES" \
    | sed -n 's/.*purchases_per_s=\([0-9]*\).*/\1/p')"

set +e
/usr/bin/time -v target/release/swarm run "$SCENARIO" --no-tui --report-dir "$WORK/run" \
    >"$WORK/stdout" 2>"$WORK/stderr"
code=$?
# The same run without the live audit poller, to price it.
SWARM_LIVE_AUDIT=off target/release/swarm run "$SCENARIO" --no-tui --report-dir "$WORK/quiet" \
    >/dev/null 2>&1
set -e
rss_kib="$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$WORK/stderr")"
python3 - "$WORK/run/summary.json" "$bare" "$rss_kib" "$code" "$WORK/quiet/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
quiet = json.load(open(sys.argv[5]))
bare, rss_kib, code = float(sys.argv[2]), int(sys.argv[3] or 0), int(sys.argv[4])
wall = s["elapsed_ms"] / 1000
rate = s["rates"]["purchases_per_s"]
print(f"scenario            {s['scenario']} ({s['agents_done']} agents, {s['database_engine']})")
print(f"wall                {wall:.1f} s (run, excluding build)")
print(f"agents/s            {s['rates']['agents_per_s']:.0f}")
print(f"purchases/s         {rate:.0f}")
print(f"bare rusqlite loop  {bare:.0f} purchases/s (one transaction per purchase)")
print(f"ratio               {rate / bare:.2f}")
print(f"peak RSS            {rss_kib / 1024:.0f} MiB")
print(f"OCC retries         {s['counters']['occ_retries']}")
q = quiet["rates"]["purchases_per_s"]
print(f"live audit cost     {100 * (q - rate) / q:+.1f}% purchases/s ({q:.0f}/s without the poller)")
inv = {c['name']: c['count'] for c in s['audit']['checks'] if c['validity'] == 'invalid'}
print(f"invariants          {'all 0' if not inv else inv}")
print(f"verdict             {s['validity']} (exit {code})")
PY
