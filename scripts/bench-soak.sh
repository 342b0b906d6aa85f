#!/usr/bin/env bash
# Memory over a long run: an open-model run of MINUTES minutes (default 10) at RATE agents/s
# (default 1000) on the embedded default, a region fault every minute (crash, lost-ack,
# blackhole, outage in turn, each healed after 20 s), the process's resident memory sampled
# every second. Prints the RSS after the first minute and at the last arrival, the mean of the
# second minute against the last minute of arrivals, the peak, and the least-squares slope
# over the arrivals after the first minute: flat means the history streams to disk and
# nothing else grows with the run's length. Not a test.
#
#   scripts/bench-soak.sh                 # MINUTES=10 RATE=1000
#   MINUTES=2 scripts/bench-soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${MINUTES:-10}"
RATE="${RATE:-1000}"
cargo build --release --quiet --bin swarm
. scripts/bench/machine.sh
bench_machine swarm sqlite
WORK="$(mktemp -d)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
{
    echo "name = \"rss-soak\""
    echo "seed = 7"
    echo "catalog = { items = 4, stock = 200000, buckets = 16, price_minor = 2500, currency = \"USD\" }"
    echo "mandates = { count = 20000, cap_minor = 100000, shards = 4 }"
    echo "agents = { count = $((MINUTES * 60 * RATE)), in_flight = 256, arrival = \"rate\", rate_per_s = $RATE }"
    echo "mix = { well_behaved = 0.9, double_submit = 0.04, crash_restart = 0.03, key_rotator = 0.01, payload_mutator = 0.02 }"
    echo "retry = { timeout_ms = 1000, max_attempts = 8, backoff_ms = [10, 500] }"
    printf '[[regions]]\nname = "a"\n[[regions]]\nname = "b"\n'
    modes=(crash lost-ack blackhole outage)
    for m in $(seq 1 $((MINUTES - 1))); do
        region=$([[ $((m % 2)) -eq 0 ]] && echo a || echo b)
        printf '[[faults]]\nat = "%dm"\nkind = "region-down"\nregion = "%s"\nmode = "%s"\nheal_after = "20s"\n' \
            "$m" "$region" "${modes[$(((m - 1) % 4))]}"
    done
} >"$WORK/soak.toml"
CI=true SWARM_LOG=swarm=info target/release/swarm run "$WORK/soak.toml" --no-tui --report-dir "$WORK/run" \
    >"$WORK/out" 2>&1 &
PID=$!
: >"$WORK/rss"
start=$(date +%s%N)
done_s=""
while kill -0 "$PID" 2>/dev/null; do
    # Seconds since the start (by the clock: a sample takes a little more than a second),
    # resident total, anonymous (the heap) and file-backed (mapped files: the database).
    t=$((($(date +%s%N) - start) / 1000000000))
    rss="$(awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s ", $2}' "/proc/$PID/status" 2>/dev/null || true)"
    [[ -n "$rss" ]] && echo "$t $rss" >>"$WORK/rss"
    # The arrival phase ends when swarm logs that the last agent is done.
    if [[ -z "$done_s" ]] && grep -q "agents done" "$WORK/out"; then done_s=$t; fi
    sleep 1
done
wait "$PID" && code=0 || code=$?
python3 - "$WORK/rss" "$WORK/run/summary.json" "$code" "$MINUTES" "$RATE" "${done_s:-0}" <<'PY'
import json, sys
pts = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 4]
s = json.load(open(sys.argv[2])) if sys.argv[3] in ("0", "1", "2", "3") else {}
# The arrival phase only, up to the sample before swarm logged "agents done": the end
# (replays, the audit) is reported as the peak.
arrival_s = (int(sys.argv[6]) or int(sys.argv[4]) * 60 + 1) - 1


def slope(rows, col):
    """Least-squares slope of column `col` (KiB) over time, in MiB per minute."""
    n = len(rows)
    if n < 2:
        return 0.0
    mt = sum(r[0] for r in rows) / n
    mv = sum(r[col] for r in rows) / n
    var = sum((r[0] - mt) ** 2 for r in rows) or 1
    return sum((r[0] - mt) * (r[col] - mv) for r in rows) / var * 60 / 1024


warm = [p for p in pts if 60 <= p[0] <= arrival_s] or pts
late = [p for p in warm if p[0] >= (60 + arrival_s) / 2] or warm
print(f"run                 {sys.argv[4]} min at {sys.argv[5]} agents/s, a fault a minute "
      f"({s.get('agents_done', '?')} agents, verdict {s.get('validity', '?')}, exit {sys.argv[3]})")
print(f"RSS after warm-up   {warm[0][1] / 1024:.0f} MiB (at {warm[0][0]} s; heap {warm[0][2] / 1024:.0f}, mapped files {warm[0][3] / 1024:.0f})")
print(f"RSS at last arrival {warm[-1][1] / 1024:.0f} MiB (at {warm[-1][0]} s; heap {warm[-1][2] / 1024:.0f}, mapped files {warm[-1][3] / 1024:.0f})")
print(f"peak RSS            {max(p[1] for p in pts) / 1024:.0f} MiB (the end included: replays, the audit)")
def mean_mib(rows, col):
    return sum(r[col] for r in rows) / max(len(rows), 1) / 1024


second = [p for p in warm if p[0] < 120] or warm
last = [p for p in warm if p[0] > arrival_s - 60] or warm
print(f"mean RSS, minute 2  {mean_mib(second, 1):.0f} MiB (heap {mean_mib(second, 2):.0f}); last minute of arrivals "
      f"{mean_mib(last, 1):.0f} MiB (heap {mean_mib(last, 2):.0f}); highest while arriving {max(p[1] for p in warm) / 1024:.0f} MiB")
print(f"slope after warm-up {slope(warm, 1):+.2f} MiB/min total, {slope(warm, 2):+.2f} heap, {slope(warm, 3):+.2f} mapped files ({len(warm)} samples)")
print(f"slope, second half  {slope(late, 1):+.2f} MiB/min total, {slope(late, 2):+.2f} heap, {slope(late, 3):+.2f} mapped files ({len(late)} samples)")
PY
