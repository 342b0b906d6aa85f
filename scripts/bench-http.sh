#!/usr/bin/env bash
# swarm's HTTP generator vs oha against the same `swarm serve` endpoint, at the same
# concurrency, on the same server path (replays of stored keys): requests/s of each, the
# ratio, and client CPU per request. Not a test.
#
#   scripts/bench-http.sh        # CONCURRENCY=64 AGENTS=50000 OHA_SECONDS=10
set -euo pipefail
cd "$(dirname "$0")/.."
C="${CONCURRENCY:-64}"
AGENTS="${AGENTS:-50000}"
OHA_SECONDS="${OHA_SECONDS:-10}"

command -v oha >/dev/null 2>&1 || cargo install oha --locked
cargo build --release --quiet --bin swarm
BIN=target/release/swarm
WORK="$(mktemp -d)"
PORT=$((20000 + RANDOM % 10000))
cleanup() { [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

cat >"$WORK/bench.toml" <<TOML
name = "bench-http"
seed = 5
target = { kind = "http" }
catalog = { items = 1, stock = 0, buckets = 16, price_minor = 2500, currency = "USD" }
mandates = { count = 1000, cap_minor = 100000, shards = 4 }
agents = { count = $AGENTS, in_flight = $C }
[[regions]]
name = "local"
endpoint = "http://127.0.0.1:$PORT"
TOML
DB="sqlite://$WORK/server.db"
$BIN db seed --db "$DB" "$WORK/bench.toml" >/dev/null
$BIN serve --db "$DB" --listen "127.0.0.1:$PORT" --max-in-flight 100000 2>/dev/null &
SERVER=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

# First pass stores every key (declined: no stock); the measured pass replays them all,
# the same server path oha's fixed key takes.
CI=true $BIN run "$WORK/bench.toml" --no-tui --report-dir "$WORK/warm" >/dev/null 2>&1 || true
CI=true /usr/bin/time -f "%U %S" -o "$WORK/swarm.cpu" \
    $BIN run "$WORK/bench.toml" --no-tui --report-dir "$WORK/swarm" >/dev/null 2>&1 || true
BODY="$(python3 - "$WORK/server.db" <<'PY'
import json, sqlite3, sys
r = sqlite3.connect(sys.argv[1]).execute(
    "SELECT merchant_id, mandate_id, item_id, agent_id, quantity, amount_minor, currency FROM intent WHERE idem_key = 's5-0-0-0'").fetchone()
print(json.dumps(dict(zip(["merchantId", "mandateId", "itemId", "agentId", "quantity", "amountMinor", "currency"], r))))
PY
)"
/usr/bin/time -f "%U %S" -o "$WORK/oha.cpu" oha --no-tui -c "$C" -z "${OHA_SECONDS}s" -m POST \
    -H "Content-Type: application/json" -H "Idempotency-Key: s5-0-0-0" -d "$BODY" \
    "http://127.0.0.1:$PORT/v1/purchases/commit" >"$WORK/oha.out" 2>&1 || true

python3 - "$WORK/swarm/summary.json" "$WORK/swarm.cpu" "$WORK/oha.out" "$WORK/oha.cpu" "$C" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))
swarm_rps = s["rates"]["requests_per_s"]
requests = s["counters"]["requests"]
u, k = map(float, open(sys.argv[2]).read().split()[-2:])
out = open(sys.argv[3]).read()
m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
oha_rps = float(m.group(1)) if m else 0.0
m = re.search(r"Total:\s*([0-9.]+)\s*(ns|us|µs|ms|secs|sec|s)\b", out)
scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "secs": 1.0, "sec": 1.0, "s": 1.0}
oha_secs = float(m.group(1)) * scale[m.group(2)] if m else 0.0
ou, ok = map(float, open(sys.argv[4]).read().split()[-2:])
oha_requests = oha_rps * oha_secs
print(f"concurrency {sys.argv[5]} · server: swarm serve on embedded SQLite · replays of stored keys")
print(f"swarm  {swarm_rps:9.0f} requests/s  ({requests} requests, client CPU {1e6 * (u + k) / max(requests, 1):.1f} µs/request)")
print(f"oha    {oha_rps:9.0f} requests/s  (client CPU {1e6 * (ou + ok) / max(oha_requests, 1):.1f} µs/request)")
print(f"ratio  {swarm_rps / oha_rps if oha_rps else float('nan'):.2f} (swarm / oha)")
PY
