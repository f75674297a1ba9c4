#!/usr/bin/env bash
# The bank-style fault test (tests/LoyaltyLedger.FaultTest): 16 clients with idempotency keys and
# retries against the built executable, with servers SIGKILLed and restarted mid-write and, on
# PostgreSQL, the database restarted; then checks that nothing acknowledged was lost or duplicated
# and that points are conserved. Exits non-zero when any check fails.
#   scripts/fault-test.sh [--short|--long] [--sqlite-only|--postgres-only] [--no-build]
# --short (default) is the CI setting (about 30 s of load per database); --long runs minutes.
# PostgreSQL: a throwaway server on LEDGER_FAULT_PG_PORT (default 55436), started and stopped here.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=--short; modes="sqlite postgres"; build=1
for arg in "$@"; do
  case "$arg" in
    --short|--long) profile="$arg" ;;
    --sqlite-only) modes="sqlite" ;;
    --postgres-only) modes="postgres" ;;
    --no-build) build=0 ;;
    *) echo "usage: $0 [--short|--long] [--sqlite-only|--postgres-only] [--no-build]" >&2; exit 2 ;;
  esac
done
# Every wait inside the runner is bounded; this is the backstop for the whole run of one database.
if [ "$profile" = "--long" ]; then limit=900; else limit=240; fi

export LEDGER_PG_PORT="${LEDGER_FAULT_PG_PORT:-55436}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
work="$(mktemp -d /tmp/loyaltyledger-fault.XXXXXX)"
pg_started=0
status=0

cleanup() {
  # The runner kills its servers itself; this covers the runner being killed or timed out.
  for pids in "$work"/*/server.pids; do
    [ -f "$pids" ] || continue
    while read -r pid; do
      # Only a process that is still one of our servers: a recycled pid is left alone.
      if grep -q LoyaltyLedger.dll "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    done <"$pids"
  done
  if [ "$pg_started" = "1" ]; then scripts/postgres.sh stop || true; fi
  if [ "$status" = "0" ]; then rm -rf "$work"; else echo "fault test: logs kept in $work" >&2; fi
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

if [ "$build" = "1" ]; then
  # The runner's project builds the server too (a build-order reference), and not the xunit suite.
  dotnet build tests/LoyaltyLedger.FaultTest -c Release -v quiet -nologo
fi
server=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
runner=tests/LoyaltyLedger.FaultTest/bin/Release/net10.0/LoyaltyLedger.FaultTest.dll

for mode in $modes; do
  mkdir -p "$work/$mode"
  set +e
  if [ "$mode" = "postgres" ]; then
    conn="$(scripts/postgres.sh start)" && pg_started=1
    if [ "$pg_started" = "1" ]; then
      timeout -k 10 "$limit" dotnet "$runner" --mode postgres "$profile" --postgres "$conn" \
        --postgres-script scripts/postgres.sh --server-dll "$server" --work "$work/$mode"
      rc=$?
      scripts/postgres.sh stop; pg_started=0
    else
      echo "fault test (postgres): PostgreSQL did not start" >&2; rc=1
    fi
  else
    timeout -k 10 "$limit" dotnet "$runner" --mode sqlite "$profile" --data-dir "$work/$mode/data" \
      --server-dll "$server" --work "$work/$mode"
    rc=$?
  fi
  set -e
  if [ "$rc" = "124" ] || [ "$rc" = "137" ]; then echo "fault test ($mode): FAIL (timed out after $limit s)"; fi
  if [ "$rc" != "0" ]; then status=1; fi
done
exit "$status"
