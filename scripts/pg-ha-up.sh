#!/usr/bin/env bash
# Start, on loopback, etcd and a three-node PostgreSQL cluster managed by Patroni, wait for a
# leader (and, with --sync, a synchronous standby), and print a multi-host URL that finds
# the primary: postgres://postgres@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/postgres?target_session_attrs=read-write&connect_timeout=2
# (a connection gives up on a frozen node after 2 s and tries the next host). DIR/patroni
# holds the members' REST APIs, comma-separated, for `swarm run --patroni`.
#
#   scripts/pg-ha-up.sh DIR [--sync]     # DIR holds everything; stop it with scripts/pg-ha-down.sh DIR
#
# Installs patroni and etcd-server with apt-get when missing (Debian 12: patroni 3.0.2, etcd
# 3.4, whose v2 API is off, hence Patroni's `etcd3:` section) and works as root (everything
# runs as the `postgres` user). scripts/pg-ha-fault.sh DIR KIND fails the cluster for real
# (kill-leader, switchover, pause-leader SECS, kill-replica).
set -euo pipefail

DIR="${1:?usage: scripts/pg-ha-up.sh DIR [--sync]}"
SYNC=false
[[ "${2:-}" == "--sync" ]] && SYNC=true
log() { echo "pg-ha-up: $*" >&2; }

missing=()
command -v patroni >/dev/null 2>&1 || missing+=(patroni)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
[[ -x "${BIN:-/nonexistent}/initdb" ]] || missing+=(postgresql)
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} with apt-get"
    if [[ "$(id -u)" -ne 0 ]]; then SUDO=sudo; else SUDO=""; fi
    # Clusters started at once (tests run in parallel) install one after the other: apt
    # refuses a second apt-get while the first holds its lock. apt-get install is a no-op
    # for whatever the one before put there.
    (
        flock 9
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
    ) 9>"${TMPDIR:-/tmp}/swarm-pg-ha-apt.lock"
    BIN="$(ls -d /usr/lib/postgresql/*/bin | tail -1)"
fi
# The packages may start their own services; this cluster is ours alone.
RUN=()
if [[ "$(id -u)" -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    RUN=(runuser -u postgres --)
fi

# Leaving the cluster running is this script's job once it is up; a failure or an
# interruption before that stops whatever was started.
UP=false
trap '$UP || "$(dirname "$0")/pg-ha-down.sh" "$DIR" >/dev/null 2>&1' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -rf "$DIR"
mkdir -p "$DIR"
[[ ${#RUN[@]} -gt 0 ]] && chown postgres "$DIR"

# Ports: a base below the ephemeral range, nothing listening on any of the eight.
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
    BASE=$((21000 + (RANDOM % 400) * 20))
    ok=true
    for off in 0 1 11 12 13 21 22 23; do free $((BASE + off)) || ok=false; done
    $ok && break
done
ETCD=$((BASE)) PEER=$((BASE + 1))
echo "$BASE" >"$DIR/base"

"${RUN[@]}" etcd --name swarm-ha --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD" --advertise-client-urls "http://127.0.0.1:$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
    --initial-cluster "swarm-ha=http://127.0.0.1:$PEER" >"$DIR/etcd.log" 2>&1 &
echo $! >"$DIR/etcd.pid"
for _ in $(seq 100); do free "$ETCD" || break; sleep 0.1; done

HOSTS=() APIS=()
for i in 1 2 3; do
    PG=$((BASE + 10 + i)) API=$((BASE + 20 + i))
    HOSTS+=("127.0.0.1:$PG")
    APIS+=("http://127.0.0.1:$API")
    cat >"$DIR/n$i.yml" <<YML
scope: swarm-ha
name: n$i
restapi:
  listen: 127.0.0.1:$API
  connect_address: 127.0.0.1:$API
etcd3:
  hosts: 127.0.0.1:$ETCD
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: $SYNC
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 300
        wal_log_hints: "on"
  initdb:
  - encoding: UTF8
  - auth: trust
  pg_hba:
  - host all all 127.0.0.1/32 trust
  - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$PG
  connect_address: 127.0.0.1:$PG
  data_dir: $DIR/n$i
  bin_dir: $BIN
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
  parameters:
    unix_socket_directories: $DIR
YML
    [[ ${#RUN[@]} -gt 0 ]] && chown postgres "$DIR/n$i.yml"
    "${RUN[@]}" patroni "$DIR/n$i.yml" >"$DIR/n$i.log" 2>&1 &
    echo $! >"$DIR/n$i.pid"
done

# A leader, and two replicas streaming (one of them synchronous with --sync).
want=2
for _ in $(seq 120); do
    leaders=0 replicas=0
    for i in 1 2 3; do
        code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 20 + i))/leader" || true)"
        [[ "$code" == 200 ]] && leaders=$((leaders + 1))
        code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 20 + i))/replica" || true)"
        [[ "$code" == 200 ]] && replicas=$((replicas + 1))
    done
    if [[ $leaders -eq 1 && $replicas -ge $want ]]; then
        if ! $SYNC || [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 21))/sync" || true)$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 22))/sync" || true)$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + 23))/sync" || true)" == *200* ]]; then
            URL="postgres://postgres@$(IFS=,; echo "${HOSTS[*]}")/postgres?target_session_attrs=read-write&connect_timeout=2"
            echo "$URL" >"$DIR/url"
            (IFS=,; echo "${APIS[*]}") >"$DIR/patroni"
            log "Patroni cluster up in $DIR ($($SYNC && echo synchronous || echo asynchronous) replication)"
            echo "$URL"
            UP=true
            exit 0
        fi
    fi
    sleep 0.5
done
log "no leader with two replicas within 60 s; logs in $DIR"
tail -5 "$DIR"/n*.log >&2
exit 1
