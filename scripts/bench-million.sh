#!/usr/bin/env bash
# The main job as a benchmark: `swarm run scenarios/million.toml --no-tui` on the embedded
# default, next to the bare one-transaction-per-purchase rusqlite loop (same stock, same
# buckets, same mandates, mostly declined), measured in the same script. Prints wall time,
# agents/s, purchases/s, peak RSS, the ratio to the bare loop, and the price of the live
# audit poller, of the dashboard (million and smoke, with and without the TUI), of the
# Prometheus exporter and of Mission Control. Not a test.
#
# The run and the bare loop take turns RUNS times (default 3) and the ratio is that of
# their medians: on a shared machine one pair can be 10 % off either way.
#
#   scripts/bench-million.sh [SCENARIO]     # BARE_PURCHASES=200000 RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO="${1:-scenarios/million.toml}"
BARE_PURCHASES="${BARE_PURCHASES:-200000}"
RUNS="${RUNS:-3}"

cargo build --release --quiet --bin swarm --examples
. scripts/bench/machine.sh
bench_machine swarm sqlite
WORK="$(mktemp -d)"
# stdin for the dashboard runs: a pipe that never speaks, so no stray byte reaches the
# dashboard as a key press.
exec 3< <(sleep 3600)
SILENT=$!
trap 'rm -rf "$WORK"; kill "$SILENT" 2>/dev/null' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

set +e
bares=(); runs=()
for i in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/bare.db"* "$WORK/run"
    bares+=("$(target/release/examples/bench_kernel bare "$WORK/bare.db" 100 16 10000 10000 "$BARE_PURCHASES" \
        | sed -n 's/.*purchases_per_s=\([0-9]*\).*/\1/p')")
    /usr/bin/time -v target/release/swarm run "$SCENARIO" --no-tui --report-dir "$WORK/run" \
        >"$WORK/stdout" 2>"$WORK/stderr"
    code=$?
    rss_now="$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$WORK/stderr")"
    rss_kib=$(( ${rss_now:-0} > ${rss_kib:-0} ? ${rss_now:-0} : ${rss_kib:-0} ))
    runs+=("$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rates']['purchases_per_s'])" "$WORK/run/summary.json")")
    echo "pair $i              run $(printf '%.0f' "${runs[-1]}") purchases/s · bare loop ${bares[-1]} purchases/s · ratio $(python3 -c "print(f'{${runs[-1]} / ${bares[-1]}:.2f}')")" >&2
done
bare="$(python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "${bares[@]}")"
# The same run without the live audit poller, to price it.
SWARM_LIVE_AUDIT=off target/release/swarm run "$SCENARIO" --no-tui --report-dir "$WORK/quiet" \
    >/dev/null 2>&1
# And with the dashboard, in a pseudo-terminal (script(1)), to price that.
env -u CI TERM=xterm-256color script -qec \
    "target/release/swarm run $SCENARIO --report-dir $WORK/tui --exit-on-finish" /dev/null <&3 >/dev/null 2>&1
# With the Prometheus exporter, scraped every second, and with Mission Control watched by
# one browser-like viewer (an event stream read to the end), to price each.
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MPORT="$(port)"; WPORT="$(port)"
target/release/swarm run "$SCENARIO" --no-tui --report-dir "$WORK/prom" --metrics-listen "127.0.0.1:$MPORT" \
    >/dev/null 2>&1 &
RUN=$!
while kill -0 "$RUN" 2>/dev/null; do curl -s -o /dev/null "http://127.0.0.1:$MPORT/metrics"; sleep 1; done
wait "$RUN"
target/release/swarm run "$SCENARIO" --no-tui --report-dir "$WORK/web" --web "127.0.0.1:$WPORT" \
    >/dev/null 2>&1 &
RUN=$!
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$WPORT/" && break; sleep 0.1; done
curl -sN "http://127.0.0.1:$WPORT/events" >/dev/null 2>&1 &
VIEWER=$!
wait "$RUN"
kill "$VIEWER" 2>/dev/null
set -e
python3 - "$WORK/run/summary.json" "$bare" "$rss_kib" "$code" "$WORK/quiet/summary.json" "$WORK/tui/summary.json" "${runs[*]}" "$WORK/prom/summary.json" "$WORK/web/summary.json" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))
quiet = json.load(open(sys.argv[5]))
tui = json.load(open(sys.argv[6]))
bare, rss_kib, code = float(sys.argv[2]), int(sys.argv[3] or 0), int(sys.argv[4])
runs = [float(r) for r in sys.argv[7].split()]
wall = s["elapsed_ms"] / 1000
rate = statistics.median(runs)
print(f"scenario            {s['scenario']} ({s['agents_done']} agents, {s['database_engine']})")
print(f"wall                {wall:.1f} s (last run, excluding build)")
print(f"agents/s            {s['rates']['agents_per_s']:.0f}")
print(f"purchases/s         {rate:.0f} (median of {len(runs)} runs: {', '.join(f'{r:.0f}' for r in runs)})")
print(f"bare rusqlite loop  {bare:.0f} purchases/s (one transaction per purchase; median of {len(runs)})")
print(f"ratio               {rate / bare:.2f} (of the medians)")
# The scenario's fault holds a region down for seconds whatever the speed (agents whose home
# region is down back off before they fail over): the last run's whole seconds with every
# region up, and with one down, apart.
import csv, os
rows = list(csv.DictReader(open(os.path.join(os.path.dirname(sys.argv[1]), "timeseries.csv"))))
up, down, before = [], [], 0
for row in rows:
    done = int(row["agents_done"])
    if done < s["agents_total"]:
        states = [v for k, v in row.items() if k.startswith("region:")]
        (up if all(v == "UP" for v in states) else down).append(done - before)
    before = done
if up:
    u = statistics.median(up)
    print(f"all regions up      {u:.0f} agents/s (median of {len(up)} whole seconds, last run; {u / bare:.2f}× the bare loop)")
if down:
    print(f"a region down       {statistics.median(down):.0f} agents/s (median of {len(down)} whole seconds)")
print(f"peak RSS            {rss_kib / 1024:.0f} MiB (highest of the runs)")
print(f"OCC retries         {s['counters']['occ_retries']}")
q = quiet["rates"]["purchases_per_s"]
print(f"live audit cost     {100 * (q - rate) / q:+.1f}% purchases/s ({q:.0f}/s without the poller)")
t = tui["rates"]["purchases_per_s"]
print(f"dashboard cost      {100 * (rate - t) / rate:+.1f}% purchases/s ({t:.0f}/s with the TUI, {rate:.0f}/s without)")
prom = json.load(open(sys.argv[8]))["rates"]["purchases_per_s"]
print(f"exporter cost       {100 * (rate - prom) / rate:+.1f}% purchases/s ({prom:.0f}/s with --metrics-listen scraped every second)")
web = json.load(open(sys.argv[9]))["rates"]["purchases_per_s"]
print(f"Mission Control     {100 * (rate - web) / rate:+.1f}% purchases/s ({web:.0f}/s with --web and one viewer)")
inv = {c['name']: c['count'] for c in s['audit']['checks'] if c['validity'] == 'invalid'}
print(f"invariants          {'all 0' if not inv else inv}")
print(f"verdict             {s['validity']} (exit {code})")
# The seed's proof line, and ours from the same run.
print("seed's line         a 1,000,000-agent swarm sells exactly 100 units — oversells 0 · duplicate settlements 0 · ledger drift 0 · mandate breaches 0, with OCC retries bounded (585) and visibly non-zero")
h = s["headline"]
print(f"ours                a {s['agents_done']:,}-agent swarm sells {h['units_sold']} of {h['initial_stock']} units — oversells {h['oversells']} · duplicate settlements {h['duplicate_settlements']} · ledger drift {h['ledger_drift']} · mandate breaches {h['mandate_breaches']}, with OCC retries {h['occ_retries']} (kernel: {s.get('settings') and dict(s['settings']).get('kernel', 'default') or 'default'})")
PY

# The smoke scenario with and without the dashboard, too (medians of 3).
smoke_rate() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rates']['purchases_per_s'])" "$1"; }
plain=(); dash=()
for i in 1 2 3; do
    target/release/swarm run scenarios/smoke.toml --no-tui --report-dir "$WORK/smoke-plain-$i" >/dev/null 2>&1 || true
    env -u CI TERM=xterm-256color script -qec \
        "target/release/swarm run scenarios/smoke.toml --report-dir $WORK/smoke-tui-$i --exit-on-finish" /dev/null <&3 >/dev/null 2>&1 || true
    plain+=("$(smoke_rate "$WORK/smoke-plain-$i/summary.json")")
    dash+=("$(smoke_rate "$WORK/smoke-tui-$i/summary.json")")
done
python3 - "${plain[*]}" "${dash[*]}" <<'PY'
import statistics, sys
p = statistics.median(map(float, sys.argv[1].split()))
d = statistics.median(map(float, sys.argv[2].split()))
runs = lambda xs: ", ".join(f"{float(x):.0f}" for x in xs.split())
print(f"smoke               {p:.0f} purchases/s without the TUI, {d:.0f} with ({100 * (p - d) / p:+.1f}%; runs {runs(sys.argv[1])} / {runs(sys.argv[2])})")
PY
