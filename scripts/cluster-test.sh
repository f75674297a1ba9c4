#!/usr/bin/env bash
# The cluster test (tests/LoyaltyLedger.ClusterTest): starts a cluster with scripts/cluster.sh (a
# PostgreSQL primary, a streaming replica, two servers, HAProxy), runs the scenarios through HAProxy,
# stops the cluster. Scenarios: read-your-writes with consistency tokens (stale reads 0), the same
# without tokens (stale reads counted), the catalog and keys seen across servers within their cache
# bounds, the replica stopped mid-run (0 errors), one server SIGKILLed mid-run (lost 0, duplicated 0).
# Ends with `cluster test: N passed, M failed`, one per scenario; exits non-zero when any failed.
#   scripts/cluster-test.sh [--no-build] [runner options, e.g. --pairs 500]
# Ports: LEDGER_CLUSTER_PORT, LEDGER_CLUSTER_SERVER_PORTS, LEDGER_CLUSTER_PG_PORT,
# LEDGER_CLUSTER_REPLICA_PORT (see scripts/cluster.sh); the defaults here differ from cluster.sh's,
# so a cluster started by hand is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1; runner_args=()
for arg in "$@"; do
  if [ "$arg" = "--no-build" ]; then build=0; else runner_args+=("$arg"); fi
done
export LEDGER_CLUSTER_PORT="${LEDGER_CLUSTER_PORT:-18450}"
export LEDGER_CLUSTER_SERVER_PORTS="${LEDGER_CLUSTER_SERVER_PORTS:-18451,18452}"
export LEDGER_CLUSTER_PG_PORT="${LEDGER_CLUSTER_PG_PORT:-55450}"
export LEDGER_CLUSTER_REPLICA_PORT="${LEDGER_CLUSTER_REPLICA_PORT:-55451}"
export LEDGER_CLUSTER_DIR="${LEDGER_CLUSTER_DIR:-/tmp/loyaltyledger-cluster-test-$LEDGER_CLUSTER_PORT}"
# The servers inherit these: the per-key rate limit (per server process) is lifted, the test measures
# the cluster, not the limiter.
export Ledger__RateLimit__PermitsPerSecond=1000000 Ledger__RateLimit__Burst=1000000
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# Every wait inside the runner is bounded; this is the backstop for the whole run.
limit=300

if [ "$build" = 1 ]; then
  # The runner's project builds the fault test's and the server's too.
  dotnet build tests/LoyaltyLedger.ClusterTest -c Release -v quiet -nologo
fi
server=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
runner=tests/LoyaltyLedger.ClusterTest/bin/Release/net10.0/LoyaltyLedger.ClusterTest.dll
work="$(mktemp -d /tmp/loyaltyledger-cluster-test.XXXXXX)"
log="$work/runner.log"
status=0

cleanup() {
  scripts/cluster.sh stop || true
  if [ "$status" = "0" ]; then rm -rf "$work"; else echo "cluster test: runner output kept in $work" >&2; fi
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

set +e
front="$(scripts/cluster.sh start --no-build --no-demo)"
rc=$?
if [ "$rc" = 0 ]; then
  servers="$(echo "$LEDGER_CLUSTER_SERVER_PORTS" | tr ',' '\n' | sed 's|^|http://127.0.0.1:|' | paste -sd,)"
  timeout -k 10 "$limit" dotnet "$runner" --front "$front" --servers "$servers" \
    --postgres "Host=127.0.0.1;Port=$LEDGER_CLUSTER_PG_PORT;Username=postgres;Database=postgres" \
    --cluster-script scripts/cluster.sh --state "$LEDGER_CLUSTER_DIR" --server-dll "$server" --work "$work" \
    ${runner_args[@]+"${runner_args[@]}"} 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = "124" ] || [ "$rc" = "137" ]; then echo "cluster test: FAIL (timed out after $limit s)"; fi
else
  echo "cluster test: the cluster did not start" >&2
fi
set -e
passed=$(grep -cE '^cluster test \(.*\): PASS' "$log" 2>/dev/null || true)
failed=$(grep -cE '^cluster test \(.*\): FAIL' "$log" 2>/dev/null || true)
# A run that stopped before its scenarios (set-up, start-up, timeout) is one failure more.
if [ "$rc" != 0 ] && [ "${failed:-0}" = 0 ]; then failed=1; fi
[ "$rc" = 0 ] || status=1
echo "cluster test: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
