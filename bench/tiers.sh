#!/usr/bin/env bash
# The tier evaluation benchmark of docs/performance.md ("Tiers"), on PostgreSQL and then SQLite:
#   1. seeds an organization of N members (default 1,000,000; 5 events each, activity spread evenly,
#      --skew 0) whose program has the tiers of bench/tier-policy-evaluation.json (bench/run.sh's 3
#      tiers on points earned over a rolling 12-month period, multipliers 1, 1.5 and 2, with entry
#      thresholds scaled to that activity so that about a quarter of the members hold a tier above
#      the base one), every member's tier and counters computed by the seeder from the history it
#      generates, with a chosen share of the members' periods ended by the end of that history
#      (default all of them),
#   2. runs `tiers evaluate --as-of <end of the history>` (what POST /v1/lifecycle/tiers/evaluate
#      and the background lifecycle run call) once, timed by the command itself: members evaluated
#      per second, and what the run decided (renewed, downgraded, rolled over, upgraded),
#   3. runs it again with the same --as-of: nothing is due any more, so it evaluates nobody,
#   4. reports the command's peak memory, then removes the data.
# Usage: bench/tiers.sh [--quick] [--members N] [--events N] [--skew S] [--due SHARE] [--policy FILE] [--postgres-only | --sqlite-only]
#   --quick: 20,000 members. Default events: 5 per member (registrations included).
# Environment: LEDGER_PG_PORT (default 55440).
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

evaluate() { # args: label storage options...; prints the command's line and the rate
  local label="$1"; shift
  local line evaluated seconds
  /usr/bin/time -f '%M' -o "$work/time.txt" dotnet "$app" tiers evaluate --as-of "$as_of" "$@" >"$work/evaluate.log" 2>&1 \
    || { echo "tiers evaluate failed:" >&2; cat "$work/evaluate.log" >&2; exit 1; }
  # "as of ...: N owners evaluated (R renewed, D downgraded, K rolled over at their tier), U upgraded; run X; S s"
  line=$(tr '\r' '\n' <"$work/evaluate.log" | grep -E 'owners evaluated' | tail -n 1)
  evaluated=$(echo "$line" | sed -nE 's/.*: ([0-9]+) owners evaluated.*/\1/p')
  seconds=$(echo "$line" | sed -nE 's/.*; ([0-9.]+) s$/\1/p')
  echo "   $label: $line"
  echo "   $label: $(awk -v n="${evaluated:-0}" -v t="${seconds:-0}" 'BEGIN {printf "%.0f", (t > 0 ? n / t : 0)}') members evaluated/s, peak memory $(awk '{printf "%d MB", $1 / 1024}' "$work/time.txt")"
}

run() { # args: database-label storage options...
  local label="$1"; shift
  echo "== $label: seeding $members members, $events events (skew $skew), tiers of $policy, share due $due"
  dotnet "$app" seed --customers "$members" --events "$events" --skew "$skew" --org-name "tiers-bench" \
    --tiers "$policy" --tiers-due "$due" "$@" \
    | tee "$work/seed.log" | tr '\r' '\n' | grep -v '^\[' | grep -E "^seeding '|seeded in|customers [0-9]|rate:|tiers:" || true
  as_of=$(sed -nE 's/.*tiers evaluate --as-of ([^ ]+).*/\1/p' "$work/seed.log")
  [ -n "$as_of" ] || { echo "the seed printed no evaluation instant" >&2; exit 1; }
  echo "== $label: tiers evaluate --as-of $as_of"
  evaluate first "$@"
  evaluate again "$@"
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
