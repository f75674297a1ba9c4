#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL from the installed binaries, on a loopback port, in a
# directory of its own. Used by the test and benchmark scripts; nothing here touches a system cluster.
#   scripts/postgres.sh start   -> prints the connection string on stdout
#   scripts/postgres.sh restart  -> pg_ctl restart -m fast: every session is cut, as in a failover
#   scripts/postgres.sh stop
# And a streaming replica of it (pg_basebackup -R: standby.signal and primary_conninfo), on
# LEDGER_PG_REPLICA_PORT (default: the primary's port + 10), in a directory of its own:
#   scripts/postgres.sh start-replica   -> prints the replica's connection string on stdout
#   scripts/postgres.sh halt-replica    -> stops the replica server, keeping its data (a replica that is down)
#   scripts/postgres.sh resume-replica  -> starts it again; it catches up from the primary
#   scripts/postgres.sh stop-replica    -> stops it and removes its directory
# The primary needs nothing more than initdb gives it: wal_level=replica, max_wal_senders=10, and
# pg_hba.conf lets the postgres user replicate from 127.0.0.1 (trust, as the rest of this server).
set -euo pipefail
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
PGPORT="${LEDGER_PG_PORT:-55432}"
PGDIR="${LEDGER_PG_DIR:-/tmp/loyaltyledger-pg-$PGPORT}"
REPLICA_PORT="${LEDGER_PG_REPLICA_PORT:-$((PGPORT + 10))}"
REPLICA_DIR="${LEDGER_PG_REPLICA_DIR:-/tmp/loyaltyledger-pg-replica-$REPLICA_PORT}"

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
  start-replica)
    if [ -f "$REPLICA_DIR/data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$REPLICA_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$REPLICA_DIR"; mkdir -p "$REPLICA_DIR"
    [ "$(id -u)" = "0" ] && chown postgres:postgres "$REPLICA_DIR"
    # -R writes standby.signal and primary_conninfo; -X stream copies the WAL written meanwhile.
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres -D "$REPLICA_DIR/data" -R -X stream -c fast >"$REPLICA_DIR/basebackup.log" 2>&1
    as_pg "$PGBIN/pg_ctl" -D "$REPLICA_DIR/data" -l "$REPLICA_DIR/server.log" -w -t 60 \
      -o "-p $REPLICA_PORT -k $REPLICA_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c hot_standby=on -c fsync=${LEDGER_PG_FSYNC:-on}" start >/dev/null
    echo "Host=127.0.0.1;Port=$REPLICA_PORT;Username=postgres;Database=postgres"
    ;;
  halt-replica)
    as_pg "$PGBIN/pg_ctl" -D "$REPLICA_DIR/data" -m fast -w stop >/dev/null
    ;;
  resume-replica)
    # pg_ctl starts it with the options it was first started with (kept in postmaster.opts).
    as_pg "$PGBIN/pg_ctl" -D "$REPLICA_DIR/data" -l "$REPLICA_DIR/server.log" -w -t 60 \
      -o "-p $REPLICA_PORT -k $REPLICA_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c hot_standby=on -c fsync=${LEDGER_PG_FSYNC:-on}" start >/dev/null
    ;;
  stop-replica)
    if [ -f "$REPLICA_DIR/data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$REPLICA_DIR/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$REPLICA_DIR"
    ;;
  *) echo "usage: $0 start|restart|stop|start-replica|halt-replica|resume-replica|stop-replica" >&2; exit 2 ;;
esac
