#!/usr/bin/env bash
# Points-ledger read at depth, on SQLite and on a throwaway PostgreSQL (see docs/performance.md).
#   bench/points-ledger-depth.sh [extra LoyaltyLedger.Bench arguments, e.g. --others 10 --runs 30]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release bench/LoyaltyLedger.Bench -v quiet -nologo
echo "== SQLite"
dotnet run -c Release --no-build --project bench/LoyaltyLedger.Bench -- "$@"
export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55432}"
pg="$(scripts/postgres.sh start)"
trap 'scripts/postgres.sh stop' EXIT
echo "== PostgreSQL"
dotnet run -c Release --no-build --project bench/LoyaltyLedger.Bench -- --postgres "$pg" "$@"
