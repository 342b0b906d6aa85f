#!/usr/bin/env bash
# A real fault on the Patroni cluster scripts/pg-ha-up.sh DIR made. Meant as a `command`
# fault (command = "scripts/pg-ha-fault.sh \"$SWARM_PG_HA_DIR\" KIND"); prints what it did.
#
#   scripts/pg-ha-fault.sh DIR kill-leader        # kill -9 the leader's Patroni and PostgreSQL:
#                                                 # its leader key expires, a replica is promoted
#   scripts/pg-ha-fault.sh DIR switchover         # planned: patronictl switchover to a replica
#   scripts/pg-ha-fault.sh DIR pause-leader SECS  # SIGSTOP the leader's Patroni and every
#                                                 # PostgreSQL process for SECS, then SIGCONT
#                                                 # (Jepsen's pause; past the 10 s TTL a replica
#                                                 # is promoted while the old leader sleeps)
#   scripts/pg-ha-fault.sh DIR kill-replica       # kill -9 a replica (the synchronous standby
#                                                 # when there is one)
set -euo pipefail
DIR="${1:?usage: scripts/pg-ha-fault.sh DIR kill-leader|switchover|pause-leader SECS|kill-replica}"
KIND="${2:?usage: scripts/pg-ha-fault.sh DIR kill-leader|switchover|pause-leader SECS|kill-replica}"
BASE="$(cat "$DIR/base")"

# The member whose REST API answers 200 at PATH (/leader, /sync, /replica), as its number.
member() {
    for i in 1 2 3; do
        if [[ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 20 + i))$1" || true)" == 200 ]]; then
            echo "$i"
            return 0
        fi
    done
    return 1
}
postmaster() { head -1 "$DIR/n$1/postmaster.pid"; }
kill_node() {
    pkill -9 -f "patroni $DIR/n$1.yml" || true
    kill -9 "$(postmaster "$1")" 2>/dev/null || true
}

case "$KIND" in
kill-leader)
    n="$(member /leader)" || { echo "no leader to kill" >&2; exit 1; }
    kill_node "$n"
    echo "killed leader n$n"
    ;;
switchover)
    n="$(member /leader)" || { echo "no leader to switch over from" >&2; exit 1; }
    c="$(member /sync || member /replica)" || { echo "no replica to switch over to" >&2; exit 1; }
    patronictl -c "$DIR/n$n.yml" switchover --leader "n$n" --candidate "n$c" --force >&2
    echo "switched over n$n -> n$c"
    ;;
pause-leader)
    secs="${3:?pause-leader needs SECS}"
    [[ "$secs" =~ ^[0-9]+$ ]] || { echo "pause-leader: SECS must be whole seconds, not '$secs'" >&2; exit 2; }
    n="$(member /leader)" || { echo "no leader to pause" >&2; exit 1; }
    pm="$(postmaster "$n")"
    # Whatever happens to this script, the node wakes up again.
    trap 'pkill -CONT -P "$pm" 2>/dev/null; kill -CONT "$pm" 2>/dev/null; pkill -CONT -f "patroni $DIR/n$n.yml"' EXIT
    pkill -STOP -f "patroni $DIR/n$n.yml" || true
    kill -STOP "$pm"
    pkill -STOP -P "$pm" || true
    sleep "$secs"
    echo "paused leader n$n for ${secs} s"
    ;;
kill-replica)
    n="$(member /sync || member /replica)" || { echo "no replica to kill" >&2; exit 1; }
    kill_node "$n"
    echo "killed replica n$n"
    ;;
*)
    echo "unknown fault '$KIND': kill-leader, switchover, pause-leader SECS or kill-replica" >&2
    exit 2
    ;;
esac
