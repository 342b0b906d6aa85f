#!/usr/bin/env bash
# swarm's HTTP generator vs oha against the same `swarm serve` endpoint, at the same
# concurrency, on the same server path (replays of stored keys): requests/s of each, the
# ratio, and client CPU per request, over plain HTTP/1.1, HTTPS/1.1 and HTTPS with HTTP/2
# (one table row each). Not a test.
#
# The two generators take turns (ROUNDS rounds, swarm then oha, about SECONDS each) and
# the medians are compared, so a noisy neighbour hurts both alike.
#
# swarm's runs measure the generator alone, as oha is: no conformance probe before the
# agents (`--no-probe`) and no final reads after them (`audit.final_reads.max_keys = 0`),
# so its requests/s and CPU per request are the agents' requests and nothing else.
#
#   scripts/bench-http.sh        # CONCURRENCY=64 AGENTS=200000 ROUNDS=3 MODES="http1 https1 https2"
#   SWARM_BIN=/path/to/swarm scripts/bench-http.sh   # another build of swarm (before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
C="${CONCURRENCY:-64}"
AGENTS="${AGENTS:-200000}"
ROUNDS="${ROUNDS:-3}"

command -v oha >/dev/null 2>&1 || cargo install oha --locked
command -v openssl >/dev/null 2>&1 || { echo "bench-http.sh: openssl (the CLI) makes the test certificate: apt-get install openssl" >&2; exit 69; }
if [[ -n "${SWARM_BIN:-}" ]]; then
    BIN="$SWARM_BIN"
else
    cargo build --release --quiet --bin swarm
    BIN=target/release/swarm
fi
. scripts/bench/machine.sh
bench_machine swarm oha sqlite
WORK="$(mktemp -d)"
cleanup() { [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A throwaway certificate for 127.0.0.1: both generators skip verification (oha --insecure,
# swarm's tls.insecure), so both pay the same handshake and record costs and nothing else.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1

# scenario MODE PORT: the bench scenario for one mode (http1, https1, https2).
scenario() {
    local mode=$1 port=$2 scheme=http target='{ kind = "http" }'
    case $mode in
        https1) scheme=https; target='{ kind = "http", http = "1.1", tls = { insecure = true } }' ;;
        https2) scheme=https; target='{ kind = "http", http = "2", tls = { insecure = true } }' ;;
    esac
    cat >"$WORK/$mode.toml" <<TOML
name = "bench-$mode"
seed = 5
target = $target
catalog = { items = 1, stock = 0, buckets = 16, price_minor = 2500, currency = "USD" }
mandates = { count = 1000, cap_minor = 100000, shards = 4 }
agents = { count = $AGENTS, in_flight = $C }
audit = { final_reads = { max_keys = 0 } }
[[regions]]
name = "local"
endpoint = "$scheme://127.0.0.1:$port"
TOML
}

DB="sqlite://$WORK/server.db"
scenario http1 1
$BIN db seed --db "$DB" "$WORK/http1.toml" >/dev/null

# The server's CPU time (clock ticks) so far: what each generator's requests cost it.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }

MODES="${MODES:-http1 https1 https2}"
for mode in $MODES; do
    PORT=$((20000 + RANDOM % 10000))
    scenario "$mode" "$PORT"
    TLS_ARGS=() OHA_ARGS=() SCHEME=http
    if [[ $mode != http1 ]]; then
        TLS_ARGS=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem") OHA_ARGS=(--insecure) SCHEME=https
    fi
    [[ $mode == https2 ]] && OHA_ARGS+=(--http2)
    $BIN serve --db "$DB" --listen "127.0.0.1:$PORT" --max-in-flight 100000 "${TLS_ARGS[@]}" 2>/dev/null &
    SERVER=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
    # First pass stores every key (declined: no stock); the measured passes replay them
    # all, the same server path oha's fixed key takes (swarm's keys are all different,
    # oha's one key is always in cache: the server CPU per request of each is printed).
    # One run id for every pass, so the measured passes replay the first pass's keys.
    CI=true $BIN run "$WORK/$mode.toml" --no-tui --no-probe --run-id bench --report-dir "$WORK/$mode.warm" >/dev/null 2>&1 || true
    BODY="$(python3 - "$WORK/server.db" <<'PY'
import json, sqlite3, sys
r = sqlite3.connect(sys.argv[1]).execute(
    "SELECT merchant_id, mandate_id, item_id, agent_id, quantity, amount_minor, currency FROM intent WHERE idem_key = 'bench-s5-0-0-0'").fetchone()
print(json.dumps(dict(zip(["merchantId", "mandateId", "itemId", "agentId", "quantity", "amountMinor", "currency"], r))))
PY
)"
    for round in $(seq "$ROUNDS"); do
        server_ticks >"$WORK/server.$mode.$round.swarm.0"
        CI=true /usr/bin/time -f "%U %S" -o "$WORK/swarm.$mode.$round.cpu" \
            $BIN run "$WORK/$mode.toml" --no-tui --no-probe --run-id bench --report-dir "$WORK/swarm.$mode.$round" >/dev/null 2>&1 || true
        server_ticks >"$WORK/server.$mode.$round.swarm.1"
        # oha runs as long as swarm just did.
        SECS="$(python3 -c "import json,sys; print(max(1, round(json.load(open(sys.argv[1]))['elapsed_ms'] / 1000)))" "$WORK/swarm.$mode.$round/summary.json")"
        server_ticks >"$WORK/server.$mode.$round.oha.0"
        /usr/bin/time -f "%U %S" -o "$WORK/oha.$mode.$round.cpu" oha --no-tui -c "$C" -z "${SECS}s" -m POST "${OHA_ARGS[@]}" \
            -H "Content-Type: application/json" -H "Idempotency-Key: bench-s5-0-0-0" -d "$BODY" \
            "$SCHEME://127.0.0.1:$PORT/v1/purchases/commit" >"$WORK/oha.$mode.$round.out" 2>&1 || true
        server_ticks >"$WORK/server.$mode.$round.oha.1"
    done
    kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true
    SERVER=""
done

python3 - "$WORK" "$ROUNDS" "$C" "$(getconf CLK_TCK)" "$MODES" <<'PY'
import json, re, statistics, sys
work, rounds, c, hz, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5].split()
names = {"http1": "HTTP/1.1", "https1": "HTTPS/1.1", "https2": "HTTPS/2 (h2)"}
def server_us(m, r, who, n):
    a, b = (float(open(f"{work}/server.{m}.{r}.{who}.{i}").read()) for i in (0, 1))
    return 1e6 * (b - a) / hz / max(n, 1)
scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "secs": 1.0, "sec": 1.0, "s": 1.0}
def cpu(path):
    u, k = map(float, open(path).read().split()[-2:])
    return u + k
med = lambda xs: statistics.median(xs)
table = []
for mode in modes:
    rows = []
    for r in range(1, rounds + 1):
        try:
            s = json.load(open(f"{work}/swarm.{mode}.{r}/summary.json"))
        except OSError:
            print(f"{mode} round {r}: swarm wrote no summary")
            continue
        n = s["counters"]["requests"]
        swarm = (s["rates"]["requests_per_s"], 1e6 * cpu(f"{work}/swarm.{mode}.{r}.cpu") / max(n, 1), server_us(mode, r, "swarm", n))
        out = open(f"{work}/oha.{mode}.{r}.out").read()
        m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
        rps = float(m.group(1)) if m else 0.0
        m = re.search(r"Total:\s*([0-9.]+)\s*(ns|us|µs|ms|secs|sec|s)\b", out)
        secs = float(m.group(1)) * scale[m.group(2)] if m else 0.0
        oha = (rps, 1e6 * cpu(f"{work}/oha.{mode}.{r}.cpu") / max(rps * secs, 1), server_us(mode, r, "oha", rps * secs))
        rows.append((swarm, oha))
        print(f"{names[mode]:13} round {r}: swarm {swarm[0]:8.0f} req/s {swarm[1]:5.1f} µs CPU/req (server {swarm[2]:5.1f}) · "
              f"oha {oha[0]:8.0f} req/s {oha[1]:5.1f} µs CPU/req (server {oha[2]:5.1f})")
    if rows:
        s_rps, s_cpu, s_srv = (med([r[0][i] for r in rows]) for i in range(3))
        o_rps, o_cpu, o_srv = (med([r[1][i] for r in rows]) for i in range(3))
        table.append((names[mode], s_rps, s_cpu, s_srv, o_rps, o_cpu, o_srv))
print()
print(f"concurrency {c} · server: swarm serve on embedded SQLite · replays of stored keys · medians of {rounds} alternating rounds")
print(f"{'':14}{'swarm req/s':>12}{'oha req/s':>11}{'ratio':>7}{'swarm µs CPU/req':>18}{'oha µs CPU/req':>16}{'server µs/req (swarm/oha)':>28}")
for name, s_rps, s_cpu, s_srv, o_rps, o_cpu, o_srv in table:
    ratio = s_rps / o_rps if o_rps else float("nan")
    print(f"{name:14}{s_rps:12.0f}{o_rps:11.0f}{ratio:7.2f}{s_cpu:18.1f}{o_cpu:16.1f}{s_srv:14.1f} / {o_srv:<11.1f}")
PY
