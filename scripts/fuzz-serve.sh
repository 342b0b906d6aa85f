#!/usr/bin/env bash
# The fuzzer in CI: Schemathesis generates requests from `swarm serve`'s own
# /openapi.json (every check, a bounded number of examples per operation, a fixed seed),
# with an API key on, against a seeded SQLite database; then `swarm audit --db` must find
# the database sound. Fails on any 5xx, any answer that breaks the document, any
# schema-valid request refused for no business reason, or any invariant broken.
#
#   scripts/fuzz-serve.sh [BINARY]     # default target/debug/swarm; EXAMPLES=60
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/swarm}"
EXAMPLES="${EXAMPLES:-60}"
if ! command -v schemathesis >/dev/null 2>&1; then
    echo "fuzz-serve: installing schemathesis" >&2
    pip install -q schemathesis >&2 2>/dev/null || pip install -q --break-system-packages schemathesis >&2
fi
[[ -x "$BIN" ]] || cargo build --quiet --bin swarm

WORK="$(mktemp -d)"
# A port the kernel says is free right now (a random one could be PostgreSQL's).
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cleanup() { [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DB="sqlite://$WORK/fuzz.db"
"$BIN" db seed --db "$DB" scenarios/smoke.toml >/dev/null
SWARM_FUZZ_KEY=fuzz-key "$BIN" serve --db "$DB" --listen "127.0.0.1:$PORT" --api-key-env SWARM_FUZZ_KEY 2>"$WORK/serve.log" &
SERVER=$!
# Up to 30 s on a loaded machine; a server that died says why.
for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    if ! kill -0 "$SERVER" 2>/dev/null; then
        cat "$WORK/serve.log" >&2
        echo "fuzz-serve: FAIL: swarm serve exited before listening on $PORT" >&2
        exit 1
    fi
    sleep 0.05
done

(cd "$WORK" && schemathesis --config-file "$OLDPWD/scripts/schemathesis.toml" run \
    "http://127.0.0.1:$PORT/openapi.json" --checks all --max-examples "$EXAMPLES" \
    --seed 20261202 --wait-for-schema 30 -H "Authorization: Bearer fuzz-key") >"$WORK/fuzz.txt" 2>&1 || {
    tail -60 "$WORK/fuzz.txt" >&2
    echo "fuzz-serve: FAIL: schemathesis found failures" >&2
    exit 1
}
grep -E 'generated' "$WORK/fuzz.txt" | tail -1 | sed 's/^ */fuzz-serve: /'
kill "$SERVER" && wait "$SERVER" 2>/dev/null || true
SERVER=""
if ! "$BIN" audit --db "$DB" >"$WORK/audit.txt" 2>&1; then
    cat "$WORK/audit.txt" >&2
    echo "fuzz-serve: FAIL: the database is not sound after the fuzzing" >&2
    exit 1
fi
echo "fuzz-serve: passed ($(tail -1 "$WORK/audit.txt"))"
