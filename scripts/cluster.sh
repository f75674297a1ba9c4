#!/usr/bin/env bash
# Starts or stops the real thing on one machine, all on 127.0.0.1: a PostgreSQL primary, a streaming
# replica made from it with pg_basebackup -R (standby.signal), two LoyaltyLedger server processes on
# the primary (the replica configured as their read replica) and HAProxy in front of them
# (round-robin, HTTP health checks on /health/ready). Used by scripts/cluster-test.sh and
# bench/replicas.sh; nothing here touches a system PostgreSQL or HAProxy.
#   scripts/cluster.sh start [--no-build] [--no-demo]  -> prints the front URL on stdout
#   scripts/cluster.sh stop                            -> stops everything and removes the state dir
#   scripts/cluster.sh halt-replica                    -> stops the replica only, keeping its data (a failure drill)
#   scripts/cluster.sh resume-replica                  -> starts it again; it catches up from the primary
#   scripts/cluster.sh status                          -> what runs, one line each
# start seeds the demo organization through the first server (credentials demo / demo-secret, or
# LEDGER_DEMO_KEY / LEDGER_DEMO_SECRET) unless --no-demo; the second server starts after it.
# The servers inherit the environment, so any setting can be given as Ledger__Section__Name=value.
# Every pid, log and data directory lives in one state dir (LEDGER_CLUSTER_DIR), which stop removes.
# Ports (environment):
#   LEDGER_CLUSTER_PORT          HAProxy's front                   default 5080 (the demo's address,
#                                so the README's examples run against the cluster as they are)
#   LEDGER_CLUSTER_SERVER_PORTS  the two servers (comma-separated) default 5081,5082
#   LEDGER_CLUSTER_PG_PORT       the primary                       default 55440
#   LEDGER_CLUSTER_REPLICA_PORT  the replica                       default 55441
# (HTTP ports below Linux's ephemeral range, 32768-60999, where an outgoing connection can already
# hold a port.)
set -euo pipefail
cd "$(dirname "$0")/.."

front_port="${LEDGER_CLUSTER_PORT:-5080}"
IFS=',' read -r -a server_ports <<<"${LEDGER_CLUSTER_SERVER_PORTS:-5081,5082}"
pg_port="${LEDGER_CLUSTER_PG_PORT:-55440}"
replica_port="${LEDGER_CLUSTER_REPLICA_PORT:-55441}"
state="${LEDGER_CLUSTER_DIR:-/tmp/loyaltyledger-cluster-$front_port}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
export PGBIN
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
front="http://127.0.0.1:$front_port"
primary_conn="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=postgres"
replica_conn="Host=127.0.0.1;Port=$replica_port;Username=postgres;Database=postgres"

say() { echo "cluster: $*" >&2; }
primary() { LEDGER_PG_PORT="$pg_port" LEDGER_PG_DIR="$state/primary" scripts/postgres.sh "$@"; }

# A pid from the state dir, only while it is still the process we started (a recycled pid is left alone).
live_pid() { # args: pidfile pattern
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && grep -qa "$2" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

wait_ready() { # args: url seconds [pid]
  local i
  for i in $(seq 1 $(($2 * 4))); do
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then return 1; fi
    curl -fs -o /dev/null --max-time 2 "$1/health/ready" && return 0
    sleep 0.25
  done
  return 1
}

replica() { # the replica's commands of scripts/postgres.sh, on this cluster's primary and replica
  LEDGER_PG_PORT="$pg_port" LEDGER_PG_DIR="$state/primary" LEDGER_PG_REPLICA_PORT="$replica_port" LEDGER_PG_REPLICA_DIR="$state/replica" \
    scripts/postgres.sh "$@"
}

start_server() { # args: index extra-options...
  local i="$1"; shift
  local port="${server_ports[$((i - 1))]}"
  # setsid: the server outlives this script and is no member of its caller's process group.
  setsid dotnet "$app" serve --postgres "$primary_conn" --urls "http://127.0.0.1:$port" \
    ${replica_setting:+--set "$replica_setting"} "$@" >"$state/server$i.log" 2>&1 </dev/null &
  echo $! >"$state/server$i.pid"
  if ! wait_ready "http://127.0.0.1:$port" 90 "$!"; then
    say "server $i did not become ready on port $port; its log:"; tail -n 30 "$state/server$i.log" >&2
    return 1
  fi
  say "server $i: http://127.0.0.1:$port (pid $(cat "$state/server$i.pid"), log $state/server$i.log)"
}

start_haproxy() {
  {
    cat <<EOF
global
    maxconn 4096
    pidfile $state/haproxy.pid

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A connection that cannot be made is tried again on the other server (nothing was sent yet);
    # a request that reached a server is never resent by HAProxy: the client retries it, with its
    # Idempotency-Key.
    retries 2
    option redispatch

frontend ledger
    bind 127.0.0.1:$front_port
    default_backend servers

backend servers
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2
EOF
    local i
    for i in "${!server_ports[@]}"; do
      echo "    server s$((i + 1)) 127.0.0.1:${server_ports[$i]} check"
    done
  } >"$state/haproxy.cfg"
  haproxy -c -q -f "$state/haproxy.cfg" >&2
  haproxy -D -f "$state/haproxy.cfg" -p "$state/haproxy.pid" >"$state/haproxy.log" 2>&1
}

stop_all() {
  local i pid
  for i in $(seq 1 "${#server_ports[@]}"); do
    if pid="$(live_pid "$state/server$i.pid" LoyaltyLedger.dll)"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if pid="$(live_pid "$state/haproxy.pid" haproxy)"; then kill "$pid" 2>/dev/null || true; fi
  if [ -d "$state/replica" ]; then replica stop-replica || true; fi
  primary stop || true
  rm -rf "$state"
}

command="${1:-}"; shift || true
build=1; demo=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --no-demo) demo=0 ;;
    *) echo "usage: $0 start [--no-build] [--no-demo] | stop | halt-replica | resume-replica | status" >&2; exit 2 ;;
  esac
done

case "$command" in
  start)
    command -v haproxy >/dev/null || { say "haproxy is not installed (Debian: apt-get install haproxy)"; exit 1; }
    if [ -d "$state" ]; then say "$state exists: stopping what it records first"; stop_all; fi
    [ "${#server_ports[@]}" -ge 1 ] || { say "LEDGER_CLUSTER_SERVER_PORTS names no port"; exit 2; }
    mkdir -p "$state"; chmod 755 "$state"
    trap 'say "start failed; stopping what started (logs were in $state)"; stop_all' ERR
    if [ "$build" = 1 ]; then dotnet build -c Release src/LoyaltyLedger -v quiet -nologo >&2; fi
    primary start >/dev/null
    say "primary: $primary_conn"
    replica start-replica >/dev/null
    say "replica: $replica_conn (streaming from the primary)"
    # Both servers read from the replica (Ledger:ReadReplicas, README "Read replicas and read-your-writes").
    replica_setting="Ledger:ReadReplicas:0=$replica_conn"
    # Migrations and the demo organization first, through one server, so the second finds them done.
    if [ "$demo" = 1 ]; then start_server 1 --demo; else start_server 1; fi
    for i in $(seq 2 "${#server_ports[@]}"); do start_server "$i"; done
    start_haproxy
    wait_ready "$front" 30 || { say "HAProxy's front $front did not answer"; false; }
    say "HAProxy: $front (round-robin, health checks on /health/ready; config $state/haproxy.cfg)"
    [ "$demo" = 1 ] && say "credentials: ${LEDGER_DEMO_KEY:-demo} / ${LEDGER_DEMO_SECRET:-demo-secret} (HTTP Basic)"
    say "state: $state (scripts/cluster.sh stop removes it)"
    trap - ERR
    echo "$front"
    ;;
  stop)
    stop_all
    ;;
  halt-replica|resume-replica)
    replica "$command"
    ;;
  status)
    for i in $(seq 1 "${#server_ports[@]}"); do
      if pid="$(live_pid "$state/server$i.pid" LoyaltyLedger.dll)"; then echo "server $i: pid $pid, port ${server_ports[$((i - 1))]}"; else echo "server $i: down"; fi
    done
    if pid="$(live_pid "$state/haproxy.pid" haproxy)"; then echo "haproxy: pid $pid, $front"; else echo "haproxy: down"; fi
    for db in primary replica; do
      if [ -f "$state/$db/data/postmaster.pid" ]; then echo "$db: pid $(head -n 1 "$state/$db/data/postmaster.pid")"; else echo "$db: down"; fi
    done
    ;;
  *) echo "usage: $0 start [--no-build] [--no-demo] | stop | halt-replica | resume-replica | status" >&2; exit 2 ;;
esac
