#!/usr/bin/env bash
# Runs the whole test suite on both databases: SQLite (files in a temp dir) and a throwaway
# PostgreSQL that this script starts from the installed binaries and stops afterwards.
# Set LEDGER_TEST_POSTGRES to use a server of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."

started_postgres=0
if [ -z "${LEDGER_TEST_POSTGRES:-}" ]; then
  export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55432}"
  LEDGER_TEST_POSTGRES="$(scripts/postgres.sh start)"
  export LEDGER_TEST_POSTGRES
  started_postgres=1
  trap 'scripts/postgres.sh stop' EXIT
fi
echo "PostgreSQL for tests: $LEDGER_TEST_POSTGRES"

log="$(mktemp)"
set +e
dotnet test LoyaltyLedger.slnx -c Release "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# The fault test (servers SIGKILLed, PostgreSQL restarted; see docs/reliability.md), short settings,
# once per database; each database counts as one test in the summary. `dotnet test` does not build
# the runner (it is no test project), so the first run builds the solution and the second reuses it.
# It starts and restarts a PostgreSQL of its own (LEDGER_FAULT_PG_PORT, default 55436), so the
# tests' server is stopped first rather than left idle beside it.
fault_passed=0; fault_failed=0
if [ -z "${LEDGER_SKIP_FAULT_TEST:-}" ]; then
  if [ "$started_postgres" = "1" ]; then scripts/postgres.sh stop; trap - EXIT; fi
  build=""
  for mode in sqlite postgres; do
    if scripts/fault-test.sh --short $build "--$mode-only"; then
      fault_passed=$((fault_passed + 1))
    else
      fault_failed=$((fault_failed + 1)); status=1
    fi
    build="--no-build"
  done
fi

# The cluster test (a primary, a streaming replica, two servers behind HAProxy; see
# scripts/cluster-test.sh): each scenario counts as one test. LEDGER_SKIP_FAULT_TEST skips it too
# (both start real processes for minutes), as does LEDGER_SKIP_CLUSTER_TEST alone; it runs after the
# fault test, which stopped the tests' PostgreSQL. Its ports are
# LEDGER_CLUSTER_PORT, LEDGER_CLUSTER_SERVER_PORTS, LEDGER_CLUSTER_PG_PORT, LEDGER_CLUSTER_REPLICA_PORT.
if [ -z "${LEDGER_SKIP_FAULT_TEST:-}" ] && [ -z "${LEDGER_SKIP_CLUSTER_TEST:-}" ]; then
  cluster_log="$(mktemp)"
  set +e
  scripts/cluster-test.sh 2>&1 | tee "$cluster_log"
  cluster_status=${PIPESTATUS[0]}
  set -e
  counts="$(sed -nE 's/^cluster test: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$cluster_log" | tail -n 1)"
  if [ -z "$counts" ]; then counts="0 1"; fi
  fault_passed=$((fault_passed + ${counts% *})); fault_failed=$((fault_failed + ${counts#* }))
  if [ "$cluster_status" != 0 ]; then status=1; fi
  rm -f "$cluster_log"
fi

# The served OpenAPI document must pass the linter (Redocly, no errors); it counts as one test.
lint_passed=0; lint_failed=0
if scripts/lint-openapi.sh --no-build; then lint_passed=1; else lint_failed=1; status=1; fi
fault_passed=$((fault_passed + lint_passed)); fault_failed=$((fault_failed + lint_failed))

# One plain closing line that any CI reader understands.
summary="$(grep -E '(Passed|Failed)!? +- +Failed: +[0-9]+, Passed: +[0-9]+' "$log" | tail -n 1 || true)"
if [ -n "$summary" ]; then
  failed="$(echo "$summary" | sed -E 's/.*Failed: +([0-9]+).*/\1/')"
  passed="$(echo "$summary" | sed -E 's/.*Passed: +([0-9]+).*/\1/')"
  skipped="$(echo "$summary" | sed -E 's/.*Skipped: +([0-9]+).*/\1/')"
  echo "tests: $((passed + fault_passed)) passed, $((failed + fault_failed)) failed, $skipped skipped"
  if [ "$passed" = "0" ]; then echo "no test ran" >&2; status=1; fi
else
  echo "tests: $fault_passed passed, $((fault_failed + 1)) failed (no test summary found)"
  status=1
fi
rm -f "$log"
exit "$status"
