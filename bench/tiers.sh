#!/usr/bin/env bash
# The tier evaluation benchmark of docs/performance.md ("Tiers"), on PostgreSQL and then SQLite:
#   1. seeds an organization of N members (default 1,000,000; 5 events each, activity spread evenly,
#      --skew 0) whose program has the tiers of bench/tier-policy-evaluation.json (bench/run.sh's 3
#      tiers on points earned over a rolling 12-month period, multipliers 1, 1.5 and 2, with entry
#      thresholds scaled to that activity so that about a quarter of the members hold a tier above
#      the base one), every member's tier and counters computed by the seeder from the history it
#      generates, with a chosen share of the members' periods ended by the end of that history
#      (default all of them),
#   2. starts the real server (its background lifecycle run off, so only the request evaluates) and
#      asks it once for POST /v1/lifecycle/tiers/evaluate {"asOf": <end of the history>}, timed:
#      members evaluated per second, and what the run decided (renewed, downgraded, rolled, upgraded),
#   3. asks again with the same asOf: nothing is due any more, so it evaluates nobody,
#   4. reports the server's peak memory, then removes the data.
# Usage: bench/tiers.sh [--quick] [--members N] [--events N] [--skew S] [--due SHARE] [--policy FILE] [--postgres-only | --sqlite-only]
#   --quick: 20,000 members. Default events: 5 per member (registrations included).
# Environment: LEDGER_PG_PORT (default 55440), BENCH_HTTP_PORT (default 18440).
set -euo pipefail
cd "$(dirname "$0")/.."

members=1000000; events=""; skew=0; due=1; policy=bench/tier-policy-evaluation.json; databases="postgres sqlite"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) members=20000 ;;
    --members) members="$2"; shift ;;
    --events) events="$2"; shift ;;
    --due) due="$2"; shift ;;
    --skew) skew="$2"; shift ;;
    --policy) policy="$2"; shift ;;
    --postgres-only) databases="postgres" ;;
    --sqlite-only) databases="sqlite" ;;
    *) echo "usage: $0 [--quick] [--members N] [--events N] [--skew S] [--due SHARE] [--policy FILE] [--postgres-only | --sqlite-only]" >&2; exit 2 ;;
  esac
  shift
done
events="${events:-$((members * 5))}"

export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55440}"
url="http://127.0.0.1:${BENCH_HTTP_PORT:-18440}"
key=bench-tiers-key; secret=bench-secret-0123
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
work="$(mktemp -d /tmp/loyaltyledger-tiers-bench.XXXXXX)"
pg_started=0; server_pid=""

cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "$pg_started" = 1 ]; then scripts/postgres.sh stop || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release src/LoyaltyLedger >/dev/null

start_server() { # args: storage options...
  # Ledger:ExpiryInterval=0: no background lifecycle run, so only the measured request evaluates.
  Ledger__ExpiryInterval=0 dotnet "$app" serve "$@" --urls "$url" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 120); do
    curl -fs "$url/health" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 1
}

stop_server() {
  echo "   server peak memory: $(awk '/VmHWM/ {printf "%d MB", $2/1024}' "/proc/$server_pid/status")"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

evaluate() { # args: label; prints the answer, its time and the rate
  local label="$1" answer seconds evaluated
  answer=$(curl -s -w ' %{http_code} %{time_total}' -u "$key:$secret" -X POST "$url/v1/lifecycle/tiers/evaluate" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: tiers-bench-$label-$RANDOM" -d "{\"asOf\":\"$as_of\"}")
  seconds=$(echo "$answer" | awk '{print $NF}')
  case "$answer" in *" 200 "*) ;; *) echo "the evaluation answered: $answer" >&2; exit 1 ;; esac
  evaluated=$(echo "$answer" | sed -nE 's/.*"evaluated":([0-9]+).*/\1/p')
  echo "   $label: $(echo "$answer" | awk '{print $1}')"
  echo "   $label: $(printf '%.2f' "$seconds") s, $(awk -v n="${evaluated:-0}" -v t="$seconds" 'BEGIN {printf "%.0f", (t > 0 ? n / t : 0)}') members evaluated/s"
}

run() { # args: database-label storage options...
  local label="$1"; shift
  echo "== $label: seeding $members members, $events events (skew $skew), tiers of $policy, share due $due"
  dotnet "$app" seed --customers "$members" --events "$events" --skew "$skew" --org-name "tiers-bench" --key-id "$key" --key-secret "$secret" \
    --tiers "$policy" --tiers-due "$due" "$@" \
    | tee "$work/seed.log" | tr '\r' '\n' | grep -v '^\[' | grep -E "^seeding '|seeded in|customers [0-9]|rate:|tiers:" || true
  as_of=$(sed -nE 's/.*tiers evaluate --as-of ([^ ]+).*/\1/p' "$work/seed.log")
  [ -n "$as_of" ] || { echo "the seed printed no evaluation instant" >&2; exit 1; }
  start_server "$@"
  echo "== $label: POST /v1/lifecycle/tiers/evaluate {\"asOf\":\"$as_of\"}"
  evaluate first
  evaluate again
  stop_server
}

for database in $databases; do
  if [ "$database" = postgres ]; then
    pg="$(scripts/postgres.sh start)"; pg_started=1
    run "PostgreSQL" --postgres "$pg"
    scripts/postgres.sh stop; pg_started=0
  else
    run "SQLite" --data-dir "$work/sqlite"
    rm -rf "$work/sqlite"
  fi
done
