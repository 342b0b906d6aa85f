#!/usr/bin/env bash
# Starts each middleware target on a free port, shows what a client sees (a fresh commit,
# its replay, the same key with another payload, ten concurrent requests with one fresh
# key), prints each server's truth, and stops every server it started. About 3 s.
#
#   bash tests/middleware/try.sh        (runs setup.sh first if anything is missing)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if [[ ! -d node/node_modules || ! -d py/site ]]; then ./setup.sh; fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# name|command (each takes --port 0 and prints "... listening on 127.0.0.1:PORT")
targets=(
  "express-idempotency@1.0.6|node node/express_idem.mjs"
  "@node-idempotency/nestjs@1.0.4|node node/nest_idem.mjs"
  "asgi-idempotency-header==0.2.0|python3 py/fastapi_idem.py"
  "django-idempotency-key==1.3.0|python3 py/django_idem.py"
)

declare -A port_of
for i in "${!targets[@]}"; do
  cmd="${targets[$i]#*|}"
  $cmd --port 0 >"$work/$i.log" 2>&1 &
  pids+=($!)
done
for i in "${!targets[@]}"; do
  for _ in $(seq 100); do
    port="$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/$i.log" | cut -d: -f2 || true)"
    [[ -n "$port" ]] && break
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "target ${targets[$i]%%|*} did not start:"; cat "$work/$i.log"; exit 1; }
  port_of[$i]="$port"
done

body() { # agent quantity
  printf '{"merchantId":"%s","mandateId":"%s","itemId":"%s","agentId":"%s","quantity":%d,"amountMinor":%d,"currency":"EUR"}' \
    "$merchant" "$mandate" "$item" "$1" "$2" $(( $2 * 700 ))
}
post() { # label key body -> prints status, marker headers, body
  local out="$work/out" hdr="$work/hdr" code
  code="$(curl -s -m 10 -D "$hdr" -o "$out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -H "Idempotency-Key: $2" -d "$3" "$base/v1/purchases/commit" || true)"
  local marks
  marks="$(grep -i -E '^(idempotent-replayed|retry-after):' "$hdr" | tr -d '\r' | paste -sd' ' - || true)"
  printf '  %-24s %s %s\n' "$1" "$code" "${marks:+[$marks] }$(tr -s ' \n' ' ' <"$out" | cut -c1-150)"
  cp "$out" "$work/last"
}

for i in "${!targets[@]}"; do
  name="${targets[$i]%%|*}"
  base="http://127.0.0.1:${port_of[$i]}"
  echo "== $name  (${targets[$i]#*|} --port ${port_of[$i]})"
  sandbox="$(curl -s "$base/v1/sandbox")"
  merchant="$(sed -E 's/.*"merchantId":"([^"]+)".*/\1/' <<<"$sandbox")"
  mandate="$(sed -E 's/.*"mandateId":"([^"]+)".*/\1/' <<<"$sandbox")"
  item="$(sed -E 's/.*"itemId":"([^"]+)".*/\1/' <<<"$sandbox")"
  key="try-$RANDOM$RANDOM"

  post "fresh commit" "$key" "$(body agent-1 1)"; cp "$work/last" "$work/first"
  post "replay" "$key" "$(body agent-1 1)"
  if cmp -s "$work/first" "$work/last"; then echo "                           (replay body: the first's bytes exactly)"; else echo "                           (replay body differs from the first)"; fi
  post "other payload, same key" "$key" "$(body agent-1 2)"

  key2="try-burst-$RANDOM$RANDOM"
  # ten connections opened first, then released together (curl processes would not overlap)
  python3 - "${port_of[$i]}" "$key2" "$(body agent-1 1)" >"$work/burst" <<'PY'
import http.client, sys, threading
port, key, body = int(sys.argv[1]), sys.argv[2], sys.argv[3]
gate, codes = threading.Barrier(10), []
def one():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.connect(); gate.wait()
    c.request("POST", "/v1/purchases/commit", body, {"Content-Type": "application/json", "Idempotency-Key": key})
    codes.append(c.getresponse().status); c.close()
ts = [threading.Thread(target=one) for _ in range(10)]
[t.start() for t in ts]; [t.join() for t in ts]
print("\n".join(map(str, codes)))
PY
  printf '  %-24s %s\n' "10 concurrent, 1 key" "statuses: $(sort "$work/burst" | uniq -c | awk '{printf "%sx%s ", $2, $1}')"
  truth="$(curl -s "$base/_truth")"
  echo "  truth: $(grep -o '"key":"'"$key"'"' <<<"$truth" | wc -l) execution(s) for the first key, $(grep -o '"key":"'"$key2"'"' <<<"$truth" | wc -l) for the concurrent key"
  echo "  GET /_truth: $truth" | cut -c1-400
  echo
done
echo "try.sh: done; stopping the servers"
