#!/usr/bin/env bash
# swarm's HTTP generator vs oha against the same `swarm serve` endpoint, at the same
# concurrency, on the same server path (replays of stored keys): requests/s of each, the
# ratio, and client CPU per request. Not a test.
#
# The two generators take turns (ROUNDS rounds, swarm then oha, about SECONDS each) and
# the medians are compared, so a noisy neighbour hurts both alike.
#
#   scripts/bench-http.sh        # CONCURRENCY=64 AGENTS=200000 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
C="${CONCURRENCY:-64}"
AGENTS="${AGENTS:-200000}"
ROUNDS="${ROUNDS:-3}"

command -v oha >/dev/null 2>&1 || cargo install oha --locked
cargo build --release --quiet --bin swarm
BIN=target/release/swarm
WORK="$(mktemp -d)"
PORT=$((20000 + RANDOM % 10000))
cleanup() { [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# First pass stores every key (declined: no stock); the measured passes replay them all,
# the same server path oha's fixed key takes (swarm's keys are all different, oha's one
# key is always in cache: the server CPU per request of each is printed).
# One run id for every pass, so the measured passes replay the first pass's keys.
CI=true $BIN run "$WORK/bench.toml" --no-tui --run-id bench --report-dir "$WORK/warm" >/dev/null 2>&1 || true
BODY="$(python3 - "$WORK/server.db" <<'PY'
import json, sqlite3, sys
r = sqlite3.connect(sys.argv[1]).execute(
    "SELECT merchant_id, mandate_id, item_id, agent_id, quantity, amount_minor, currency FROM intent WHERE idem_key = 'bench-s5-0-0-0'").fetchone()
print(json.dumps(dict(zip(["merchantId", "mandateId", "itemId", "agentId", "quantity", "amountMinor", "currency"], r))))
PY
)"
# The server's CPU time (clock ticks) so far: what each generator's requests cost it.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
for round in $(seq "$ROUNDS"); do
    server_ticks >"$WORK/server.$round.swarm.0"
    CI=true /usr/bin/time -f "%U %S" -o "$WORK/swarm.$round.cpu" \
        $BIN run "$WORK/bench.toml" --no-tui --run-id bench --report-dir "$WORK/swarm.$round" >/dev/null 2>&1 || true
    server_ticks >"$WORK/server.$round.swarm.1"
    # oha runs as long as swarm just did.
    SECS="$(python3 -c "import json,sys; print(max(1, round(json.load(open(sys.argv[1]))['elapsed_ms'] / 1000)))" "$WORK/swarm.$round/summary.json")"
    server_ticks >"$WORK/server.$round.oha.0"
    /usr/bin/time -f "%U %S" -o "$WORK/oha.$round.cpu" oha --no-tui -c "$C" -z "${SECS}s" -m POST \
        -H "Content-Type: application/json" -H "Idempotency-Key: s5-0-0-0" -d "$BODY" \
        "http://127.0.0.1:$PORT/v1/purchases/commit" >"$WORK/oha.$round.out" 2>&1 || true
    server_ticks >"$WORK/server.$round.oha.1"
done

python3 - "$WORK" "$ROUNDS" "$C" "$(getconf CLK_TCK)" <<'PY'
import json, re, statistics, sys
work, rounds, c, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
def server_us(r, who, n):
    a, b = (float(open(f"{work}/server.{r}.{who}.{i}").read()) for i in (0, 1))
    return 1e6 * (b - a) / hz / max(n, 1)
scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "secs": 1.0, "sec": 1.0, "s": 1.0}
def cpu(path):
    u, k = map(float, open(path).read().split()[-2:])
    return u + k
rows = []
for r in range(1, rounds + 1):
    s = json.load(open(f"{work}/swarm.{r}/summary.json"))
    n = s["counters"]["requests"]
    swarm = (s["rates"]["requests_per_s"], 1e6 * cpu(f"{work}/swarm.{r}.cpu") / max(n, 1), server_us(r, "swarm", n))
    out = open(f"{work}/oha.{r}.out").read()
    m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    rps = float(m.group(1)) if m else 0.0
    m = re.search(r"Total:\s*([0-9.]+)\s*(ns|us|µs|ms|secs|sec|s)\b", out)
    secs = float(m.group(1)) * scale[m.group(2)] if m else 0.0
    oha = (rps, 1e6 * cpu(f"{work}/oha.{r}.cpu") / max(rps * secs, 1), server_us(r, "oha", rps * secs))
    rows.append((swarm, oha))
    print(f"round {r}: swarm {swarm[0]:8.0f} req/s {swarm[1]:5.1f} µs CPU/req (server {swarm[2]:5.1f}) · "
          f"oha {oha[0]:8.0f} req/s {oha[1]:5.1f} µs CPU/req (server {oha[2]:5.1f})")
med = lambda xs: statistics.median(xs)
s_rps, s_cpu, s_srv = (med([r[0][i] for r in rows]) for i in range(3))
o_rps, o_cpu, o_srv = (med([r[1][i] for r in rows]) for i in range(3))
print(f"concurrency {c} · server: swarm serve on embedded SQLite · replays of stored keys · medians of {rounds}")
print(f"swarm  {s_rps:9.0f} requests/s  (client CPU {s_cpu:.1f} µs/request; server CPU {s_srv:.1f} µs/request)")
print(f"oha    {o_rps:9.0f} requests/s  (client CPU {o_cpu:.1f} µs/request; server CPU {o_srv:.1f} µs/request)")
print(f"ratio  {s_rps / o_rps if o_rps else float('nan'):.2f} (swarm / oha)")
PY
