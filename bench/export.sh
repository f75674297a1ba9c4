#!/usr/bin/env bash
# The ledger export benchmark of docs/performance.md ("Exports"), on SQLite and on a throwaway
# PostgreSQL:
#   1. seeds an organization with the seed command (default 20,000 customers / 500,000 events,
#      about 1.1 million ledger lines),
#   2. starts the real server process on it and exports the whole ledger over HTTP with curl to
#      /dev/null, as CSV and as NDJSON, each twice (the first run also compiles the path),
#   3. prints each export's lines per second, the first byte's latency, the bytes, and the server's
#      peak resident memory (VmHWM) before and after the exports, sampled from /proc/PID/status,
#   4. stops everything and removes the data.
# Usage: bench/export.sh [--customers N] [--events N] [--sqlite-only]
# Environment: LEDGER_PG_PORT (default 55438), BENCH_HTTP_PORT (default 18438). Traffic goes only to
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

customers=20000; events=500000; sqlite_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --customers) customers="$2"; shift ;;
    --events) events="$2"; shift ;;
    --sqlite-only) sqlite_only=1 ;;
    *) echo "usage: $0 [--customers N] [--events N] [--sqlite-only]" >&2; exit 2 ;;
  esac
  shift
done

export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55438}"
http_port="${BENCH_HTTP_PORT:-18438}"
url="http://127.0.0.1:$http_port"
key=bench-key; secret=bench-secret-0123
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
work="$(mktemp -d /tmp/loyaltyledger-export-bench.XXXXXX)"
server_pid=""; started_pg=0

cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "$started_pg" = 1 ]; then scripts/postgres.sh stop || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release src/LoyaltyLedger >/dev/null

hwm() { awk '/VmHWM/ {printf "%d MB", $2 / 1024}' "/proc/$server_pid/status"; }

start_server() { # args: storage options...
  Ledger__RateLimit__PermitsPerSecond=1000000 Ledger__RateLimit__Burst=1000000 \
    dotnet "$app" serve "$@" --urls "$url" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 120); do
    curl -fs "$url/health" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 1
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

seed() { # args: storage options...
  dotnet "$app" seed --customers "$customers" --events "$events" --org-name "export bench" --key-id "$key" --key-secret "$secret" "$@" \
    | tee "$work/seed.log" | tr '\r' '\n' | grep -v '^\[' || true
  lines=$(sed -nE 's/.* entries ([0-9,]+), lots.*/\1/p' "$work/seed.log" | tr -d ,)
}

export_all() { # args: label
  echo "   server peak memory before the exports: $(hwm)"
  for format in csv ndjson csv ndjson; do
    curl -fsS -u "$key:$secret" -o /dev/null -w "%{time_total} %{time_starttransfer} %{size_download}\n" \
      "$url/v1/exports/ledger.$format" >"$work/curl.out"
    read -r total first bytes <"$work/curl.out"
    awk -v f="$format" -v n="$lines" -v t="$total" -v s="$first" -v b="$bytes" -v m="$(hwm)" \
      'BEGIN {printf "   %-6s %d lines in %.2f s: %.0f lines/s, first byte after %.0f ms, %.0f MB; server peak memory so far %s\n", f, n, t, n / t, s * 1000, b / 1048576, m}'
  done
}

echo "== SQLite: seeding $customers customers, $events events"
seed --data-dir "$work/sqlite"
start_server --data-dir "$work/sqlite"
echo "== SQLite: the whole ledger over HTTP ($lines lines)"
export_all
stop_server

if [ "$sqlite_only" = 0 ]; then
  echo "== PostgreSQL: seeding $customers customers, $events events"
  pg="$(scripts/postgres.sh start)"; started_pg=1
  seed --postgres "$pg"
  start_server --postgres "$pg"
  echo "== PostgreSQL: the whole ledger over HTTP ($lines lines)"
  export_all
  stop_server
fi
