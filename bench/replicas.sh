#!/usr/bin/env bash
# Read throughput with one streaming replica against none, in the same run (docs/performance.md,
# "Read replicas"):
#   1. starts a cluster with scripts/cluster.sh (a primary, a replica made with pg_basebackup -R, two
#      servers reading from the replica, HAProxy in front) with the demo organization;
#   2. starts one more server on the primary alone, with no replica;
#   3. drives the points-ledger read and the vault history (32 clients, --seconds per run, after an
#      unmeasured warm-up) through HAProxy's front, then against the single server, in turns;
#   4. stops everything.
# Usage: bench/replicas.sh [--seconds N]   (default 10)
# Ports (environment): LEDGER_CLUSTER_PORT (default 18470), LEDGER_CLUSTER_SERVER_PORTS
# (18471,18472), LEDGER_CLUSTER_PG_PORT (55470), LEDGER_CLUSTER_REPLICA_PORT (55471),
# BENCH_SINGLE_PORT (the server without a replica, 18473).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift ;;
    *) echo "usage: $0 [--seconds N]" >&2; exit 2 ;;
  esac
  shift
done
export LEDGER_CLUSTER_PORT="${LEDGER_CLUSTER_PORT:-18470}"
export LEDGER_CLUSTER_SERVER_PORTS="${LEDGER_CLUSTER_SERVER_PORTS:-18471,18472}"
export LEDGER_CLUSTER_PG_PORT="${LEDGER_CLUSTER_PG_PORT:-55470}"
export LEDGER_CLUSTER_REPLICA_PORT="${LEDGER_CLUSTER_REPLICA_PORT:-55471}"
export LEDGER_CLUSTER_DIR="${LEDGER_CLUSTER_DIR:-/tmp/loyaltyledger-bench-replicas-$LEDGER_CLUSTER_PORT}"
# The per-key rate limit (per server process) is lifted: the benchmark measures the reads.
export Ledger__RateLimit__PermitsPerSecond=1000000 Ledger__RateLimit__Burst=1000000
single_url="http://127.0.0.1:${BENCH_SINGLE_PORT:-18473}"
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
load=bench/LoyaltyLedger.Load/bin/Release/net10.0/LoyaltyLedger.Load.dll
key=demo; secret=demo-secret
single_pid=""

cleanup() {
  if [ -n "$single_pid" ]; then kill "$single_pid" 2>/dev/null || true; wait "$single_pid" 2>/dev/null || true; fi
  scripts/cluster.sh stop || true
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release src/LoyaltyLedger -v quiet -nologo >/dev/null
dotnet build -c Release bench/LoyaltyLedger.Load -v quiet -nologo >/dev/null
front="$(scripts/cluster.sh start --no-build)"
dotnet "$app" serve --postgres "Host=127.0.0.1;Port=$LEDGER_CLUSTER_PG_PORT;Username=postgres;Database=postgres" \
  --urls "$single_url" >"$LEDGER_CLUSTER_DIR/single.log" 2>&1 &
single_pid=$!
for _ in $(seq 1 120); do curl -fs -o /dev/null "$single_url/health/ready" && break; sleep 0.5; done
curl -fs -o /dev/null "$single_url/health/ready" || { echo "the single server did not start" >&2; cat "$LEDGER_CLUSTER_DIR/single.log" >&2; exit 1; }

read_run() { # args: url path seconds
  dotnet "$load" read --url "$1" --key "$key" --secret "$secret" --clients 32 --requests 10000000 --seconds "$3" --path "$2" | tail -n 1 || true
}
rps_of() { echo "$1" | sed -nE 's/.* rps=([0-9.]+).*/\1/p'; }

# The demo's Priya (customer 64035151, account 6001000098662653) in program 626.
ledger="/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue=64035151&source=INSTORE&limit=10&offset=0"
vault="/api/v1.0/LoyaltyVault/Account/6001000098662653/LoyaltyPrograms/626/History?limit=10&offset=0"
for url in "$front" "$single_url"; do
  for path in "$ledger" "$vault"; do read_run "$url" "$path" 3 >/dev/null; done
done
echo "== reads, 32 clients, $seconds s each: HAProxy's front (two servers, reads from the replica) against one server on the primary alone"
for name in points-ledger vault-history; do
  if [ "$name" = points-ledger ]; then path="$ledger"; else path="$vault"; fi
  with=$(read_run "$front" "$path" "$seconds")
  without=$(read_run "$single_url" "$path" "$seconds")
  echo "   $name with the replica:    $with"
  echo "   $name without a replica:   $without"
  echo "   $name ratio with/without: $(awk -v a="$(rps_of "$with")" -v b="$(rps_of "$without")" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
done
# Where the reads went: each database's scans of ledger_entries since it started.
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
for db in primary replica; do
  if [ "$db" = primary ]; then port="$LEDGER_CLUSTER_PG_PORT"; else port="$LEDGER_CLUSTER_REPLICA_PORT"; fi
  scans=$("$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -At \
    -c "SELECT COALESCE(SUM(COALESCE(idx_scan, 0) + COALESCE(seq_scan, 0)), 0) FROM pg_stat_user_tables WHERE relname = 'ledger_entries'")
  echo "   $db: $scans scans of ledger_entries"
done
