#!/usr/bin/env bash
# Kernel throughput: embedded SQLite (the bare one-transaction-per-purchase loop vs the
# kernel as the engine drives it) and PostgreSQL at 16/32/64 connections, declined and
# commit paths, vs pgbench running the kernel's one purchase statement and vs pgbench
# running the purchase as separate statements (see below). Prints figures and ratios; not
# a test. Medians of RUNS runs.
#
#   scripts/bench-kernel.sh            # RUNS=3 N_SQLITE=200000 N_PG=20000 PG_SECONDS=10
#   PG_ONLY=1 scripts/bench-kernel.sh  # PostgreSQL only
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
. scripts/bench/machine.sh
bench_machine sqlite postgres pgbench
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

if [[ -z "${PG_ONLY:-}" ]]; then
    echo "== embedded SQLite (medians of $RUNS) =="
    embedded declined 100 "$N_SQLITE"
    embedded commit 100000000 "$N_COMMIT"
fi

echo "== PostgreSQL: kernel vs pgbench, 16 hot buckets, REPEATABLE READ (medians of $RUNS) =="
# Two pgbench baselines, each on a fresh database seeded like the kernel's:
#   same statement: pgbench runs the kernel's own purchase statement (`bench_kernel
#     pgbench-sql`: the text the kernel prepares), one round trip a purchase, from C: what
#     one round trip allows; the kernel's ratio to it is its own overhead.
#   separate statements: a straightforward client, the purchase as separate statements,
#     one round trip each (scripts/bench/pgbench-{declined,commit}.sql): what the kernel's
#     one round trip buys.
export SWARM_PG_DIR="${SWARM_PG_DIR:-/tmp/swarm-pg-bench}"
ADMIN="$(scripts/pg-up.sh "$SWARM_PG_DIR")"
# Stop what this script started, however it ends.
trap 'scripts/pg-down.sh "$SWARM_PG_DIR" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
BASE="${ADMIN%/*}"
PSQL_BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)")"
$BENCH pgbench-sql >"$WORK/same-statement.sql"
fresh() { local db="bench_${$}_$1"; psql -q "$ADMIN" -c "CREATE DATABASE $db" >/dev/null; echo "$BASE/$db"; }
pgb() { # url script clients: transactions per second
    local url=$1 script=$2 clients=$3 item mer
    item="$(psql -qtA "$url" -c "SELECT item_id FROM item WHERE sandbox = 0")"
    mer="$(psql -qtA "$url" -c "SELECT merchant_id FROM item WHERE sandbox = 0")"
    psql -q "$url" -c "CREATE TABLE pgb_mandate AS SELECT row_number() OVER (ORDER BY mandate_id) - 1 AS n, mandate_id
                        FROM mandate WHERE sandbox = 0" -c "ALTER TABLE pgb_mandate ADD PRIMARY KEY (n)" >/dev/null
    # The kernel's isolation level for a statement that is its own transaction.
    PGOPTIONS='-c default_transaction_isolation=repeatable\ read' \
        "$PSQL_BIN/pgbench" -n -M prepared -c "$clients" -j 2 -T "$PG_SECONDS" --max-tries=1000 \
        -D item="$item" -D mer="$mer" -D mandates="$MANDATES" -f "$script" "$url" 2>&1 \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | cut -d. -f1
}
for path in declined commit; do
    if [[ $path == declined ]]; then stock=0; else stock=100000000; fi
    for clients in 16 32 64; do
        kern=(); same=(); sep=()
        for i in $(seq "$RUNS"); do
            url="$(fresh "k${clients}_$i")"
            kern+=("$($BENCH kernel "$url" "$stock" 16 "$MANDATES" 1000000000 "$N_PG" "$clients" | rate)")
            url="$(fresh "s${clients}_$i")"
            $BENCH setup "$url" "$stock" 16 "$MANDATES" 1000000000 >/dev/null
            tps="$(pgb "$url" "$WORK/same-statement.sql" "$clients")"
            same+=("${tps:-0}")
            url="$(fresh "p${clients}_$i")"
            $BENCH setup "$url" "$stock" 16 "$MANDATES" 1000000000 >/dev/null
            tps="$(pgb "$url" "scripts/bench/pgbench-$path.sql" "$clients")"
            sep+=("${tps:-0}")
        done
        for i in $(seq "$RUNS"); do
            for kind in k s p; do
                psql -q "$ADMIN" -c "DROP DATABASE bench_${$}_${kind}${clients}_$i" >/dev/null
            done
        done
        k=$(printf '%s\n' "${kern[@]}" | median)
        s=$(printf '%s\n' "${same[@]}" | median)
        p=$(printf '%s\n' "${sep[@]}" | median)
        printf 'postgres %-8s %2d clients: kernel %6s/s   pgbench same statement %6s/s (ratio %s)   separate statements %6s/s (ratio %s)  (runs: kernel %s; same %s; separate %s)\n' \
            "$path" "$clients" "$k" "$s" "$(ratio "$k" "$s")" "$p" "$(ratio "$k" "$p")" "${kern[*]}" "${same[*]}" "${sep[*]}"
    done
done
