#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a loopback port and print its URL on stdout.
#
#   scripts/pg-up.sh [DIR]      # DIR defaults to $SWARM_PG_DIR or /tmp/swarm-pg
#
# Installs the server with apt-get when it is missing, works as root (the cluster runs as
# the `postgres` user), and reuses a cluster already running in DIR. Stop it with
# scripts/pg-down.sh [DIR]. Settings favour a test box: synchronous_commit=off, fsync on.
set -euo pipefail

DIR="${1:-${SWARM_PG_DIR:-/tmp/swarm-pg}}"
log() { echo "pg-up: $*" >&2; }

find_bin() {
    local b
    for b in /usr/lib/postgresql/*/bin; do
        if [[ -x "$b/initdb" ]]; then echo "$b"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
    return 1
}

BIN="$(find_bin || true)"
if [[ -z "$BIN" ]]; then
    log "PostgreSQL server not found; installing it with apt-get"
    if [[ "$(id -u)" -ne 0 ]]; then SUDO=sudo; else SUDO=""; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
    BIN="$(find_bin)" || { log "initdb still missing after install"; exit 1; }
fi

# As root, run the cluster as an unprivileged user: PostgreSQL refuses to run as root.
RUN=()
if [[ "$(id -u)" -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    RUN=(runuser -u postgres --)
fi

if [[ -f "$DIR/url" && -f "$DIR/data/postmaster.pid" ]]; then
    if "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        cat "$DIR/url"
        exit 0
    fi
fi

rm -rf "$DIR"
mkdir -p "$DIR"
if [[ ${#RUN[@]} -gt 0 ]]; then chown postgres "$DIR"; fi

# A loopback port below the kernel's ephemeral range (so no outgoing connection holds
# it) that nothing answers on; if the server still cannot bind it, try another.
low="$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
span=$(( low > 21000 ? low - 20000 : 10000 ))
"${RUN[@]}" "$BIN/initdb" -D "$DIR/data" -U swarm --auth=trust --encoding=UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
PORT=""
for _ in $(seq 20); do
    candidate=$((20000 + RANDOM % span))
    if (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then continue; fi
    if "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -c port=$candidate -c unix_socket_directories=$DIR -c max_connections=300 -c shared_buffers=256MB -c synchronous_commit=off" \
        >/dev/null 2>&1; then
        PORT=$candidate
        break
    fi
done
[[ -n "$PORT" ]] || { log "could not start PostgreSQL on a free port"; cat "$DIR/server.log" >&2; exit 1; }
URL="postgres://swarm@127.0.0.1:$PORT/postgres"
echo "$URL" >"$DIR/url"
log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') running in $DIR"
echo "$URL"
