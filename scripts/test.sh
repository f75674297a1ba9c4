#!/usr/bin/env bash
# Runs the whole test suite on both databases: SQLite (files in a temp dir) and a throwaway
# PostgreSQL that this script starts from the installed binaries and stops afterwards.
# Set LEDGER_TEST_POSTGRES to use a server of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${LEDGER_TEST_POSTGRES:-}" ]; then
  export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55432}"
  LEDGER_TEST_POSTGRES="$(scripts/postgres.sh start)"
  export LEDGER_TEST_POSTGRES
  trap 'scripts/postgres.sh stop' EXIT
fi
echo "PostgreSQL for tests: $LEDGER_TEST_POSTGRES"

log="$(mktemp)"
set +e
dotnet test LoyaltyLedger.slnx -c Release "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One plain closing line that any CI reader understands.
summary="$(grep -E '(Passed|Failed)!? +- +Failed: +[0-9]+, Passed: +[0-9]+' "$log" | tail -n 1 || true)"
if [ -n "$summary" ]; then
  failed="$(echo "$summary" | sed -E 's/.*Failed: +([0-9]+).*/\1/')"
  passed="$(echo "$summary" | sed -E 's/.*Passed: +([0-9]+).*/\1/')"
  skipped="$(echo "$summary" | sed -E 's/.*Skipped: +([0-9]+).*/\1/')"
  echo "tests: $passed passed, $failed failed, $skipped skipped"
  if [ "$passed" = "0" ]; then echo "no test ran" >&2; status=1; fi
else
  echo "tests: 0 passed, 1 failed (no test summary found)"
  status=1
fi
rm -f "$log"
exit "$status"
