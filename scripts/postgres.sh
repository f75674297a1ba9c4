#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL from the installed binaries, on a loopback port, in a
# directory of its own. Used by the test and benchmark scripts; nothing here touches a system cluster.
#   scripts/postgres.sh start   -> prints the connection string on stdout
#   scripts/postgres.sh restart  -> pg_ctl restart -m fast: every session is cut, as in a failover
#   scripts/postgres.sh stop
set -euo pipefail
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
PGPORT="${LEDGER_PG_PORT:-55432}"
PGDIR="${LEDGER_PG_DIR:-/tmp/loyaltyledger-pg-$PGPORT}"

as_pg() {
  # initdb refuses to run as root: run the server as the postgres user when we are root.
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
      echo "PostgreSQL binaries not found (set PGBIN or install postgresql)" >&2; exit 1
    fi
    if [ -f "$PGDIR/data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGDIR"; mkdir -p "$PGDIR"
    [ "$(id -u)" = "0" ] && chown postgres:postgres "$PGDIR"
    as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 >"$PGDIR/initdb.log" 2>&1
    as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
      -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=${LEDGER_PG_FSYNC:-on}" start >/dev/null
    echo "Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=postgres"
    ;;
  restart)
    # pg_ctl restarts with the options the server was started with (kept in postmaster.opts).
    as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 -m fast restart >/dev/null
    ;;
  stop)
    if [ -f "$PGDIR/data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGDIR"
    ;;
  *) echo "usage: $0 start|restart|stop" >&2; exit 2 ;;
esac
