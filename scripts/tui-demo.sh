#!/usr/bin/env bash
# Mission Control, driven like an operator would: run scenarios/failover.toml with the
# dashboard in a tmux pane, press `f` to fire the next fault, capture the pane, check the
# fault shows, and check the run finishes valid. The last frame (the verdict) must show
# the run's totals, not zeros: the OCC retries the summary counts, commits, a latency, the
# generator's RSS and no live task left; and
# scenarios/smoke.toml (shorter than a second on a fast machine) must end the same way at
# 80x24, with the hint to leave. Last, `q` as Ctrl-C: STOPPED, then ABORTING, and the run
# still reports (exit 4, stopped early). Exits non-zero on any failure.
#
#   scripts/tui-demo.sh [BINARY]     # default target/debug/swarm (built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/swarm}"
if ! command -v tmux >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then SUDO=sudo; else SUDO=""; fi
    $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux >&2
fi
[[ -x "$BIN" ]] || cargo build --quiet --bin swarm

WORK="$(mktemp -d)"
SESSION="swarm-demo-$$"
cleanup() { tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() { echo "tui-demo: FAIL: $*" >&2; tmux capture-pane -p -t "$SESSION" >&2 2>/dev/null || true; exit 1; }

# The dashboard needs a terminal and no CI=true: tmux gives the first, env -u the second.
tmux new-session -d -s "$SESSION" -x 200 -y 50 \
    "env -u CI TERM=xterm-256color $BIN run scenarios/failover.toml --report-dir $WORK/report; echo \$? > $WORK/exit; sleep 30"

for _ in $(seq 150); do
    tmux capture-pane -p -t "$SESSION" | grep -q "throughput" && break
    sleep 0.2
done
tmux capture-pane -p -t "$SESSION" | grep -q "throughput" || fail "the dashboard never appeared"

tmux send-keys -t "$SESSION" f
for _ in $(seq 20); do
    tmux capture-pane -p -t "$SESSION" >"$WORK/pane.txt"
    grep -qE "fired (outage|blackhole|crash|lost-ack)|DOWN:" "$WORK/pane.txt" && break
    sleep 0.1
done
grep -qE "fired (outage|blackhole|crash|lost-ack)|DOWN:" "$WORK/pane.txt" || fail "pressing f showed no fault"
echo "tui-demo: fault shown after pressing f: $(grep -oE "fired [a-z-]+ [a-z0-9-]+|DOWN:[a-z-]+" "$WORK/pane.txt" | head -1)"

# The verdict's frame: drawn from the run's final totals.
final_frame() { # REPORT_DIR WHAT
    local frame="$WORK/final.txt"
    for _ in $(seq 600); do
        tmux capture-pane -p -t "$SESSION" >"$frame"
        grep -q "VERDICT" "$frame" && break
        sleep 0.2
    done
    grep -q "VERDICT" "$frame" || fail "$2: no verdict in 120 s"
    sed "s/^/  | /" "$frame"
    grep -q "press any key" "$frame" || fail "$2: the verdict does not say to press a key"
    grep -qE "COMMITTED +[1-9]" "$frame" || fail "$2: no commits on the last frame"
    grep -qE "(corrected|start) +[0-9.]*[1-9]" "$frame" || fail "$2: a latency of 0 on the last frame"
    # The generator panel is measured at the end too: no agent left, a real RSS.
    grep -qE "live tasks +0 " "$frame" || fail "$2: live tasks left on the last frame"
    grep -qE "RSS +[1-9][0-9]* MiB" "$frame" || fail "$2: no RSS on the last frame"
    local counted shown
    counted="$(grep -oE '"occ_retries": [0-9]+' "$1/summary.json" | head -1 | grep -oE '[0-9]+$')"
    shown="$(grep -oE "OCC (retries )?[0-9]+ ·" "$frame" | grep -oE '[0-9]+')"
    [[ -n "$counted" && "$shown" == "$counted" ]] ||
        fail "$2: the OCC panel says ${shown:-nothing}, the summary $counted"
    echo "tui-demo: $2: the last frame shows the totals (OCC retries $shown, commits, latency)"
}
final_frame "$WORK/report" failover
tmux send-keys -t "$SESSION" x

for _ in $(seq 100); do [[ -s "$WORK/exit" ]] && break; sleep 0.2; done
[[ -s "$WORK/exit" ]] || fail "a key did not leave the dashboard"
code="$(cat "$WORK/exit")"
[[ "$code" == "0" ]] || fail "swarm exited $code"
grep -q '"validity": "valid"' "$WORK/report/summary.json" || fail "the run was not valid"
grep -q '"trigger": "key"' "$WORK/report/summary.json" || fail "the key-fired fault is not in the record"
echo "tui-demo: passed (exit $code, valid, key-fired fault recorded)"

# A run too short for a 1 s sample, on the smallest terminal the dashboard is made for.
tmux kill-session -t "$SESSION"
rm -f "$WORK/exit"
tmux new-session -d -s "$SESSION" -x 80 -y 24 \
    "env -u CI TERM=xterm-256color $BIN run scenarios/smoke.toml --report-dir $WORK/smoke; echo \$? > $WORK/exit; sleep 30"
final_frame "$WORK/smoke" "smoke at 80x24"
tmux send-keys -t "$SESSION" x
for _ in $(seq 100); do [[ -s "$WORK/exit" ]] && break; sleep 0.2; done
[[ "$(cat "$WORK/exit" 2>/dev/null)" == "0" ]] || fail "smoke exited $(cat "$WORK/exit" 2>/dev/null)"
echo "tui-demo: passed (smoke at 80x24: its totals and the hint to leave on the last frame)"

# q as Ctrl-C: the first stops arrivals, the second aborts; the run reports, exit 4.
tmux kill-session -t "$SESSION"
rm -f "$WORK/exit"
tmux new-session -d -s "$SESSION" -x 120 -y 40 \
    "env -u CI TERM=xterm-256color $BIN run scenarios/failover.toml --report-dir $WORK/stopped --exit-on-finish; echo \$? > $WORK/exit; sleep 30"
for _ in $(seq 150); do
    tmux capture-pane -p -t "$SESSION" | grep -q "throughput" && break
    sleep 0.2
done
tmux send-keys -t "$SESSION" q
for _ in $(seq 50); do
    tmux capture-pane -p -t "$SESSION" >"$WORK/pane.txt"
    grep -qE "STOPPED|VERDICT" "$WORK/pane.txt" && break
    sleep 0.05
done
grep -q "STOPPED" "$WORK/pane.txt" || fail "q did not show STOPPED"
tmux send-keys -t "$SESSION" q
for _ in $(seq 50); do
    tmux capture-pane -p -t "$SESSION" >"$WORK/pane.txt"
    grep -qE "ABORTING|VERDICT" "$WORK/pane.txt" && break
    sleep 0.05
done
if grep -q "ABORTING" "$WORK/pane.txt"; then
    said="STOPPED, then ABORTING"
else
    # The drain and audit can beat the second key on a fast machine.
    grep -q "VERDICT" "$WORK/pane.txt" || fail "a second q showed neither ABORTING nor the verdict"
    said="STOPPED (the run was audited before the second q)"
fi
for _ in $(seq 600); do [[ -s "$WORK/exit" ]] && break; sleep 0.2; done
code="$(cat "$WORK/exit" 2>/dev/null)"
[[ "$code" == "4" ]] || fail "a stopped run exited ${code:-nothing}, not 4"
grep -q '"stopped_early": true' "$WORK/stopped/summary.json" || fail "the stopped run is not marked stopped early"
echo "tui-demo: passed (q: $said; exit 4, the report written)"
