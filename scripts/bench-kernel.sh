#!/usr/bin/env bash
# Kernel throughput: embedded SQLite (the bare one-transaction-per-purchase loop vs the
# kernel as the engine drives it) and PostgreSQL at 16/32/64 connections vs pgbench running
# the same statements. Prints figures and ratios; not a test. Medians of RUNS runs.
#
#   scripts/bench-kernel.sh            # RUNS=3 N_SQLITE=200000 N_PG=20000 PG_SECONDS=10
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
N_SQLITE="${N_SQLITE:-200000}"
N_COMMIT="${N_COMMIT:-50000}"
N_PG="${N_PG:-20000}"
PG_SECONDS="${PG_SECONDS:-10}"
MANDATES=10000

cargo build --release --quiet --examples
BENCH=target/release/examples/bench_kernel
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rate() { sed -n 's/.*purchases_per_s=\([0-9]*\).*/\1/p'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

embedded() { # label stock purchases
    local label=$1 stock=$2 n=$3 bare=() kern=()
    for i in $(seq "$RUNS"); do
        bare+=("$($BENCH bare "$WORK/bare-$label-$i.db" "$stock" 16 "$MANDATES" 1000000000 "$n" | rate)")
        kern+=("$($BENCH kernel "sqlite://$WORK/kern-$label-$i.db" "$stock" 16 "$MANDATES" 1000000000 "$n" 256 | rate)")
    done
    local b k
    b=$(printf '%s\n' "${bare[@]}" | median)
    k=$(printf '%s\n' "${kern[@]}" | median)
    printf 'sqlite %-8s bare loop %7s/s   kernel (256 callers) %7s/s   ratio %s  (runs: bare %s; kernel %s)\n' \
        "$label" "$b" "$k" "$(ratio "$k" "$b")" "${bare[*]}" "${kern[*]}"
}

echo "== embedded SQLite (medians of $RUNS) =="
embedded declined 100 "$N_SQLITE"
embedded commit 100000000 "$N_COMMIT"

echo "== PostgreSQL: kernel vs pgbench, commit path, 16 hot buckets, REPEATABLE READ (medians of $RUNS) =="
export SWARM_PG_DIR="${SWARM_PG_DIR:-/tmp/swarm-pg-bench}"
ADMIN="$(scripts/pg-up.sh "$SWARM_PG_DIR")"
# Stop what this script started, however it ends.
trap 'scripts/pg-down.sh "$SWARM_PG_DIR" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
BASE="${ADMIN%/*}"
PSQL_BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)")"
fresh() { local db="bench_${$}_$1"; psql -q "$ADMIN" -c "CREATE DATABASE $db" >/dev/null; echo "$BASE/$db"; }
for clients in 16 32 64; do
    kern=(); pgb=()
    for i in $(seq "$RUNS"); do
        url="$(fresh "k${clients}_$i")"
        kern+=("$($BENCH kernel "$url" 100000000 16 "$MANDATES" 1000000000 "$N_PG" "$clients" | rate)")
        url="$(fresh "p${clients}_$i")"
        $BENCH setup "$url" 100000000 16 "$MANDATES" 1000000000 >/dev/null
        item="$(psql -qtA "$url" -c "SELECT item_id FROM item WHERE sandbox = 0")"
        tps="$("$PSQL_BIN/pgbench" -n -M prepared -c "$clients" -j 2 -T "$PG_SECONDS" --max-tries=1000 \
            -D item="$item" -f scripts/bench/pgbench-commit.sql "$url" 2>&1 \
            | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | cut -d. -f1)"
        pgb+=("${tps:-0}")
    done
    for i in $(seq "$RUNS"); do
        psql -q "$ADMIN" -c "DROP DATABASE bench_${$}_k${clients}_$i" -c "DROP DATABASE bench_${$}_p${clients}_$i" >/dev/null
    done
    k=$(printf '%s\n' "${kern[@]}" | median)
    p=$(printf '%s\n' "${pgb[@]}" | median)
    printf 'postgres %2d clients: kernel %6s/s   pgbench %6s/s   ratio %s  (runs: kernel %s; pgbench %s)\n' \
        "$clients" "$k" "$p" "$(ratio "$k" "$p")" "${kern[*]}" "${pgb[*]}"
done
