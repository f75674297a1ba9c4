#!/usr/bin/env bash
# Regenerates the NSwag C# client that the tests compile (tests/LoyaltyLedger.Tests/Api/Client/
# LedgerApiClient.g.cs) from the document the service serves, after an API change. The test
# GeneratedClientTests fails until the committed client is what the generator makes.
set -euo pipefail
cd "$(dirname "$0")/.."
LEDGER_REGENERATE_CLIENT=1 LEDGER_TEST_POSTGRES="${LEDGER_TEST_POSTGRES:-unused}" \
  dotnet test tests/LoyaltyLedger.Tests -c Release --filter "FullyQualifiedName~GeneratedClientTestsOnSqlite.the_compiled_client_is_what_nswag_generates" "$@" || true
# Built once more with the new client, the check must now pass.
LEDGER_TEST_POSTGRES="${LEDGER_TEST_POSTGRES:-unused}" \
  dotnet test tests/LoyaltyLedger.Tests -c Release --filter "FullyQualifiedName~GeneratedClientTestsOnSqlite.the_compiled_client_is_what_nswag_generates" "$@"
