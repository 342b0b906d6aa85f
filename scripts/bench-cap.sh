#!/usr/bin/env bash
# The direct target at the agent cap: scenarios/million.toml with AGENTS agents (default
# 10,000,000, the cap; mostly declined) on the embedded default. Prints the run's wall time,
# its latency p99.9 from the intended start, its peak resident memory up to the last agent
# (swarm logs it then) and over the whole run
# (sampled each second; the end included: the history audited from its file), the size of
# history.bin, then the same
# audit again as `swarm audit --db --history` on its own: wall time and peak RSS. Not a test.
#
#   scripts/bench-cap.sh                  # AGENTS=10000000
#   AGENTS=2000000 scripts/bench-cap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
AGENTS="${AGENTS:-10000000}"
cargo build --release --quiet --bin swarm
. scripts/bench/machine.sh
bench_machine swarm sqlite
WORK="$(mktemp -d)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start=$(date +%s.%N)
CI=true SWARM_LOG=swarm=info target/release/swarm run scenarios/million.toml --no-tui --agents "$AGENTS" \
    --report-dir "$WORK/run" >"$WORK/out" 2>&1 &
PID=$!
: >"$WORK/rss"
t=0
while kill -0 "$PID" 2>/dev/null; do
    rss="$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$PID/status" 2>/dev/null || true)"
    [[ -n "$rss" ]] && echo "$t $rss" >>"$WORK/rss"
    sleep 1
    t=$((t + 1))
done
wait "$PID" && code=0 || code=$?
end=$(date +%s.%N)
/usr/bin/time -v target/release/swarm audit --db "sqlite://$WORK/run/swarm.db" \
    --history "$WORK/run/history.bin" >"$WORK/audit.out" 2>"$WORK/audit.time" || true
python3 - "$WORK" "$code" "$start" "$end" "$AGENTS" <<'PY'
import json, os, re, sys
work, code, start, end, agents = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rows = [tuple(map(int, l.split())) for l in open(f"{work}/rss") if len(l.split()) == 2]
# swarm logs its resident and peak memory when the last agent is done.
done = next((l for l in open(f"{work}/out") if "agents done" in l), "")
hwm = re.search(r"memory_kib[^(]*\((\d+), (\d+)\)", done)  # colours may sit in between
s = json.load(open(f"{work}/run/summary.json")) if os.path.exists(f"{work}/run/summary.json") else {}
audit_ms = sum(t["ms"] for t in s.get("audit", {}).get("timings", []))
time_v = open(f"{work}/audit.time").read()
peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v)
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", time_v)
print(f"run                 {s.get('agents_done', '?')} agents (million.toml, embedded default), verdict {s.get('validity', '?')}, exit {code}")
print(f"wall                {end - start:.0f} s (the audit inside it: {audit_ms / 1000:.1f} s)")
lat = s.get("latency_corrected_ms", {})
print(f"latency p99.9       {lat.get('p999_ms', 0):.1f} ms from the intended start (p99 {lat.get('p99_ms', 0):.1f}, max {lat.get('max_ms', 0):.1f})")
print(f"peak RSS, agents    {int(hwm.group(2)) / 1024 if hwm else 0:.0f} MiB (when the last agent was done, as swarm logs it)")
print(f"peak RSS of the run {max(r[1] for r in rows) / 1024:.0f} MiB (the end included: the audit of the history file)")
print(f"history.bin         {os.path.getsize(f'{work}/run/history.bin') / 2**20:.0f} MiB")
print(f"swarm audit alone   {wall.group(1) if wall else '?'} wall, peak RSS {int(peak.group(1)) / 1024 if peak else 0:.0f} MiB")
PY
