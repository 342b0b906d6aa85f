#!/usr/bin/env bash
# Mission Control, driven like an operator would: run scenarios/failover.toml with the
# dashboard in a tmux pane, press `f` to fire the next fault, capture the pane, check the
# fault shows, and check the run finishes valid. Exits non-zero on any failure.
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
    "env -u CI TERM=xterm-256color $BIN run scenarios/failover.toml --report-dir $WORK/report --exit-on-finish; echo \$? > $WORK/exit; sleep 30"

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

for _ in $(seq 600); do [[ -s "$WORK/exit" ]] && break; sleep 0.2; done
[[ -s "$WORK/exit" ]] || fail "the run did not finish in 120 s"
code="$(cat "$WORK/exit")"
[[ "$code" == "0" ]] || fail "swarm exited $code"
grep -q '"validity": "valid"' "$WORK/report/summary.json" || fail "the run was not valid"
grep -q '"trigger": "key"' "$WORK/report/summary.json" || fail "the key-fired fault is not in the record"
echo "tui-demo: passed (exit $code, valid, key-fired fault recorded)"
