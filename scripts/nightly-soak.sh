#!/usr/bin/env bash
# Nightly soak: start PostgreSQL, run scenarios/soak.toml without the dashboard against it,
# serve its live metrics to Prometheus (and push them when asked), keep the report
# directory, and exit with swarm's own code (0 valid, 1 invariant, 2 threshold, 3 unknown,
# 4 stopped early, 64 usage, 70 internal).
#
#   scripts/nightly-soak.sh [REPORT_DIR]     # default reports/soak-nightly-<UTC timestamp>
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT="${1:-reports/soak-nightly-$(date -u +%Y%m%dT%H%M%SZ)}"
export SWARM_PG_DIR="${SWARM_PG_DIR:-/tmp/swarm-pg-soak}"

cargo build --release --quiet --bin swarm || exit 70
DB="$(scripts/pg-up.sh "$SWARM_PG_DIR")" || exit 70
trap 'scripts/pg-down.sh "$SWARM_PG_DIR"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
psql -q "$DB" -c "DROP DATABASE IF EXISTS swarm_soak" -c "CREATE DATABASE swarm_soak" || exit 70
# Live metrics for the monitoring the soak's owners already have: scraped on
# SWARM_METRICS_LISTEN (default 127.0.0.1:9464; "off" for none), pushed by remote write to
# SWARM_METRICS_PUSH when set (http://host:port/api/v1/write), every 5 s.
observe=()
LISTEN="${SWARM_METRICS_LISTEN:-127.0.0.1:9464}"
[[ "$LISTEN" != off ]] && observe+=(--metrics-listen "$LISTEN")
[[ -n "${SWARM_METRICS_PUSH:-}" ]] && observe+=(--metrics-push "$SWARM_METRICS_PUSH" --metrics-push-interval 5s)
CI=true target/release/swarm run scenarios/soak.toml --no-tui --db "${DB%/*}/swarm_soak" --report-dir "$REPORT" "${observe[@]}"
code=$?
echo "nightly-soak: exit $code, report in $REPORT (junit.xml, report.html, summary.json)" >&2
exit $code
