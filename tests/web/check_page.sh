#!/usr/bin/env bash
# Mission Control in headless Chromium: plays a generated run from the fake server, then
# takes screenshots after the verdict at 1920x1080 and 1280x800 and checks the DOM hooks.
#
#   tests/web/check_page.sh [SCENARIO.json]     (default tests/web/failover.json)
#   OUT=/tmp PORT=8765 CHROMIUM=chromium tests/web/check_page.sh
#
# Needs python3, node and chromium. Writes $OUT/mc-1920.png, $OUT/mc-1280.png, $OUT/mc-dom.html.
set -euo pipefail
cd "$(dirname "$0")/../.."
SCENARIO=${1:-tests/web/failover.json}
OUT=${OUT:-/tmp}
PORT=${PORT:-8765}
CHROMIUM=${CHROMIUM:-chromium}
mkdir -p "$OUT"

node --check assets/web/app.js
node tests/web/merge_test.js

server_pid=
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; fi; }
trap stop_server EXIT

# A fresh run for each look, so each page sees it live from the start. --close-after-done
# ends the stream after the verdict: headless Chromium's virtual time waits for fetches.
start_server() {
  python3 tests/web/fake_server.py --port "$PORT" --scenario "$SCENARIO" --close-after-done --quiet &
  server_pid=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/view.json" -o /dev/null 2>&1 && return; sleep 0.1; done
  echo "fake server did not start" >&2; exit 1
}

browse() {
  local profile; profile=$(mktemp -d)
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --hide-scrollbars --virtual-time-budget=10000 "$@" "http://127.0.0.1:$PORT/" 2>/dev/null
  rm -rf "$profile"
}

for size in 1920,1080 1280,800; do
  start_server
  browse --window-size="$size" --screenshot="$OUT/mc-${size%%,*}.png" >/dev/null
  stop_server
  echo "screenshot $OUT/mc-${size%%,*}.png"
done

start_server
browse --window-size=1920,1080 --dump-dom > "$OUT/mc-dom.html"
curl -fs "http://127.0.0.1:$PORT/view.json" -o "$OUT/mc-view.json"
stop_server
python3 tests/web/check_dom.py "$OUT/mc-dom.html" "$OUT/mc-view.json"
