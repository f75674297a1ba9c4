#!/usr/bin/env bash
# The tier evaluation benchmark of docs/performance.md ("Tiers"), on PostgreSQL and then SQLite:
#   1. seeds an organization of N members (default 1,000,000) whose program has the tiers of
#      bench/tier-policy.json (3 tiers on points earned over a rolling 12-month period), every
#      member's tier and counters computed by the seeder from the history it generates, with a
#      chosen share of the members' periods ended by the end of that history (default all of them),
#   2. runs `tiers evaluate --as-of <end of the history>` once, timed: members evaluated per second,
#      and what the run decided (renewed, downgraded, upgraded),
#   3. runs it again with the same --as-of: nothing is due any more, so it evaluates nobody,
#   4. reports the evaluation's peak memory, then removes the data.
# Usage: bench/tiers.sh [--quick] [--members N] [--events N] [--due SHARE] [--postgres-only | --sqlite-only]
#   --quick: 20,000 members, 100,000 events. Default events: 5 per member (registrations included).
# Environment: LEDGER_PG_PORT (default 55440).
set -euo pipefail
cd "$(dirname "$0")/.."

members=1000000; events=""; due=1; databases="postgres sqlite"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) members=20000 ;;
    --members) members="$2"; shift ;;
    --events) events="$2"; shift ;;
    --due) due="$2"; shift ;;
    --postgres-only) databases="postgres" ;;
    --sqlite-only) databases="sqlite" ;;
    *) echo "usage: $0 [--quick] [--members N] [--events N] [--due SHARE] [--postgres-only | --sqlite-only]" >&2; exit 2 ;;
  esac
  shift
done
events="${events:-$((members * 5))}"

export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55440}"
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
work="$(mktemp -d /tmp/loyaltyledger-tiers-bench.XXXXXX)"
pg_started=0

cleanup() {
  if [ "$pg_started" = 1 ]; then scripts/postgres.sh stop || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release src/LoyaltyLedger >/dev/null

evaluate() { # args: label storage options...; prints the run's line, its wall time and rate
  local label="$1"; shift
  local start end seconds line evaluated
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/time.txt" dotnet "$app" tiers evaluate --as-of "$as_of" "$@" >"$work/evaluate.log" 2>&1 \
    || { echo "tiers evaluate failed:" >&2; cat "$work/evaluate.log" >&2; exit 1; }
  end=$(date +%s.%N)
  seconds=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')
  line=$(tr '\r' '\n' <"$work/evaluate.log" | grep -v '^\[' | grep -E 'evaluated' | tail -n 1)
  evaluated=$(echo "$line" | sed -nE 's/.*evaluated[ =:]+([0-9,]+).*/\1/p' | tr -d ,)
  echo "   $label: $line"
  echo "   $label: ${seconds} s wall (process start included), $(awk -v n="${evaluated:-0}" -v t="$seconds" 'BEGIN {printf "%.0f", (t > 0 ? n / t : 0)}') members evaluated/s, peak memory $(awk '{printf "%d MB", $1 / 1024}' "$work/time.txt")"
}

run() { # args: database-label storage options...
  local label="$1"; shift
  echo "== $label: seeding $members members, $events events, tiers of bench/tier-policy.json, share due $due"
  dotnet "$app" seed --customers "$members" --events "$events" --org-name "tiers-bench" --tiers bench/tier-policy.json --tiers-due "$due" "$@" \
    | tee "$work/seed.log" | tr '\r' '\n' | grep -v '^\[' | grep -E 'seeding|seeded in|customers|rate:|tiers:' || true
  as_of=$(sed -nE 's/.*tiers evaluate --as-of ([^ ]+).*/\1/p' "$work/seed.log")
  [ -n "$as_of" ] || { echo "the seed printed no evaluation instant" >&2; exit 1; }
  echo "== $label: tiers evaluate --as-of $as_of"
  evaluate "first run" "$@"
  evaluate "second run, same --as-of" "$@"
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
