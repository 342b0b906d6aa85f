#!/usr/bin/env bash
# Stop the cluster scripts/pg-up.sh started and remove its directory.
#
#   scripts/pg-down.sh [DIR]    # DIR defaults to $SWARM_PG_DIR or /tmp/swarm-pg
set -euo pipefail

DIR="${1:-${SWARM_PG_DIR:-/tmp/swarm-pg}}"
[[ -d "$DIR/data" ]] || { echo "pg-down: nothing in $DIR" >&2; exit 0; }
BIN=""
for b in /usr/lib/postgresql/*/bin; do [[ -x "$b/pg_ctl" ]] && BIN="$b"; done
[[ -n "$BIN" ]] || BIN="$(dirname "$(command -v pg_ctl)")"
RUN=()
if [[ "$(id -u)" -eq 0 ]]; then RUN=(runuser -u postgres --); fi
"${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
rm -rf "$DIR"
echo "pg-down: stopped and removed $DIR" >&2
