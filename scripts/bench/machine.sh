# Sourced by the benchmark scripts: print, above their table, the machine the figures
# come from and the versions of what they compare, so two tables can be told apart.
#   bench_machine [TOOL...]     # TOOL: oha pgbench postgres sqlite swarm (the binary in $BIN, if set)
bench_machine() {
    local cores model
    cores="$(nproc 2>/dev/null || echo '?')"
    model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)"
    echo "machine             ${cores} cores · ${model:-unknown CPU} · $(uname -sr)"
    local t v
    for t in "$@"; do
        case $t in
            swarm) v="$("${BIN:-target/release/swarm}" --version 2>/dev/null || echo 'not built') (${BIN:-target/release/swarm})" ;;
            oha) v="$(oha --version 2>/dev/null || echo 'not installed')" ;;
            pgbench)
                v="$( (ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1 | xargs -I{} {}/pgbench --version) 2>/dev/null \
                    || pgbench --version 2>/dev/null || echo 'not installed')" ;;
            postgres)
                v="$( (ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1 | xargs -I{} {}/postgres --version) 2>/dev/null \
                    || postgres --version 2>/dev/null || echo 'not installed')" ;;
            sqlite) v="SQLite $(python3 -c 'import sqlite3; print(sqlite3.sqlite_version)' 2>/dev/null) (Python's); swarm bundles its own (rusqlite, in the run's summary)" ;;
            *) v="?" ;;
        esac
        printf '%-20s%s\n' "$t" "$v"
    done
}
