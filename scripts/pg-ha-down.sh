#!/usr/bin/env bash
# Stop what scripts/pg-ha-up.sh DIR started (Patroni, its PostgreSQL nodes, etcd) and remove DIR.
set -uo pipefail
DIR="${1:?usage: scripts/pg-ha-down.sh DIR}"
[[ -d "$DIR" ]] || exit 0
# A node paused by scripts/pg-ha-fault.sh must wake up to hear the TERM.
pkill -CONT -f "patroni $DIR/" 2>/dev/null
for i in 1 2 3; do
    if [[ -f "$DIR/n$i/postmaster.pid" ]]; then
        pm="$(head -1 "$DIR/n$i/postmaster.pid")"
        pkill -CONT -P "$pm" 2>/dev/null
        kill -CONT "$pm" 2>/dev/null
    fi
done
for i in 1 2 3; do
    [[ -f "$DIR/n$i.pid" ]] && kill "$(cat "$DIR/n$i.pid")" 2>/dev/null
done
# Patroni stops its PostgreSQL on a clean exit; whatever is left (a node killed with -9) goes.
for _ in $(seq 50); do
    pgrep -f "patroni $DIR/" >/dev/null || break
    sleep 0.2
done
pkill -9 -f "patroni $DIR/" 2>/dev/null
for i in 1 2 3; do
    if [[ -f "$DIR/n$i/postmaster.pid" ]]; then kill -9 "$(head -1 "$DIR/n$i/postmaster.pid")" 2>/dev/null; fi
done
[[ -f "$DIR/etcd.pid" ]] && kill "$(cat "$DIR/etcd.pid")" 2>/dev/null
pkill -f "etcd --name swarm-ha --data-dir $DIR/" 2>/dev/null
sleep 0.5
pkill -9 -f "etcd --name swarm-ha --data-dir $DIR/" 2>/dev/null
rm -rf "$DIR"
exit 0
