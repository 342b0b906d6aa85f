#!/usr/bin/env bash
# The primary dies for real: kill -9 the leader's Patroni and its PostgreSQL, so the leader
# key expires in etcd and a replica is promoted (scripts/pg-ha-up.sh DIR made the cluster).
# Prints the node it killed. Meant as a `command` fault: command = "scripts/pg-ha-kill-leader.sh DIR".
set -euo pipefail
DIR="${1:?usage: scripts/pg-ha-kill-leader.sh DIR}"
BASE="$(cat "$DIR/base")"
for i in 1 2 3; do
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 20 + i))/leader" || true)" == 200 ]]; then
        kill -9 "$(cat "$DIR/n$i.pid")"
        pkill -9 -f "patroni $DIR/n$i.yml" || true
        kill -9 "$(head -1 "$DIR/n$i/postmaster.pid")"
        echo "killed leader n$i"
        exit 0
    fi
done
echo "no leader to kill" >&2
exit 1
