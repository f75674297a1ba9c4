#!/usr/bin/env bash
# Lints the OpenAPI document the service serves (/openapi/v1.json) with Redocly's CLI
# (tools/openapi-lint, pinned in its package-lock.json): no errors allowed. Starts the built
# server on a throwaway SQLite directory and a loopback port, and stops it afterwards.
#   scripts/lint-openapi.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--no-build" ]; then dotnet build src/LoyaltyLedger -c Release -v quiet -nologo >/dev/null; fi
if [ ! -x tools/openapi-lint/node_modules/.bin/redocly ]; then
  (cd tools/openapi-lint && npm ci --no-audit --no-fund --loglevel=error)
fi

port="${LEDGER_LINT_PORT:-18571}"
work="$(mktemp -d)"
dotnet src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll serve --data-dir "$work" --urls "http://127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/openapi/v1.json" -o "$work/openapi.json"; then break; fi
  sleep 0.2
done
[ -s "$work/openapi.json" ] || { echo "the server did not serve /openapi/v1.json:" >&2; cat "$work/server.log" >&2; exit 1; }

tools/openapi-lint/node_modules/.bin/redocly lint --config tools/openapi-lint/redocly.yaml "$work/openapi.json"
