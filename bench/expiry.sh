#!/usr/bin/env bash
# The expiry run benchmark of docs/performance.md ("The expiry run"), on PostgreSQL and then SQLite:
#   1. seeds an organization of N customers whose history ends four years ago (`seed --until`): the
#      seeded program's points expire 36 months after they are earned, so every customer's points
#      wallet holding points is due,
#   2. on PostgreSQL, runs pgbench TPC-B (scale 10, 16 clients: the run's postings in flight) on the
#      same server first, as the reference,
#   3. runs `expire --org` (the run the background lifecycle service and POST /v1/lifecycle/expire
#      run) once, timed by the command itself: wallets expired per second, and that against
#      pgbench's tps (on SQLite against the PostgreSQL phase's pgbench figure, as bench/run.sh does),
#   4. runs it again: nothing is due any more, so it expires nothing,
#   5. runs `verify` on the organization, reports the command's peak memory, removes the data.
# Usage: bench/expiry.sh [--quick] [--customers N] [--events N] [--postgres-only | --sqlite-only]
#   --quick: 20,000 customers. Default: 200,000. Default events: 10 per customer (registrations included).
# Environment: LEDGER_PG_PORT (default 55441).
set -euo pipefail
cd "$(dirname "$0")/.."

customers=200000; events=""; databases="postgres sqlite"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) customers=20000 ;;
    --customers) customers="$2"; shift ;;
    --events) events="$2"; shift ;;
    --postgres-only) databases="postgres" ;;
    --sqlite-only) databases="sqlite" ;;
    *) echo "usage: $0 [--quick] [--customers N] [--events N] [--postgres-only | --sqlite-only]" >&2; exit 2 ;;
  esac
  shift
done
events="${events:-$((customers * 10))}"

export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55441}"
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
work="$(mktemp -d /tmp/loyaltyledger-expiry-bench.XXXXXX)"
pg_started=0
until_at="$(date -u -d '4 years ago' +%Y-%m-%dT00:00:00Z)"
pgbench_tps=""

cleanup() {
  if [ "$pg_started" = 1 ]; then scripts/postgres.sh stop || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release src/LoyaltyLedger >/dev/null

expire() { # args: label storage options...; prints the command's line, the rate and the ratio
  local label="$1"; shift
  local line expired seconds rate
  /usr/bin/time -f '%M' -o "$work/time.txt" dotnet "$app" expire --org "$org" "$@" >"$work/expire.log" 2>&1 \
    || { echo "expire failed:" >&2; cat "$work/expire.log" >&2; exit 1; }
  # "as of ...: C promised lots converted, N wallets expired, K expiry notices sent; S s"
  line=$(tr '\r' '\n' <"$work/expire.log" | grep -E 'wallets expired' | tail -n 1 || true)
  [ -n "$line" ] || { echo "expire printed no result:" >&2; cat "$work/expire.log" >&2; exit 1; }
  expired=$(echo "$line" | sed -nE 's/.* ([0-9]+) wallets expired.*/\1/p')
  seconds=$(echo "$line" | sed -nE 's/.*; ([0-9.]+) s$/\1/p')
  rate=$(awk -v n="${expired:-0}" -v t="${seconds:-0}" 'BEGIN {printf "%.0f", (t > 0 ? n / t : 0)}')
  echo "   $label: $line"
  echo "   $label: $rate wallets expired/s$([ -n "$pgbench_tps" ] && [ "${expired:-0}" -gt 0 ] && awk -v a="$rate" -v b="$pgbench_tps" 'BEGIN {printf " = %.2fx pgbench TPC-B (%.0f tps)", a / b, b}'), peak memory $(awk '{printf "%d MB", $1 / 1024}' "$work/time.txt")"
}

run() { # args: database-label storage options...
  local label="$1"; shift
  echo "== $label: seeding $customers customers, $events events, history ending $until_at"
  dotnet "$app" seed --customers "$customers" --events "$events" --org-name "expiry-bench" --until "$until_at" "$@" >"$work/seed.log" 2>&1 \
    || { echo "seed failed:" >&2; tr '\r' '\n' <"$work/seed.log" | grep -v '^\[' >&2; exit 1; }
  tr '\r' '\n' <"$work/seed.log" | grep -E "seeded in|customers [0-9]|rate:" || true
  org=$(sed -nE "s/^organization ([0-9]+) .*/\1/p" "$work/seed.log")
  [ -n "$org" ] || { echo "the seed printed no organization" >&2; exit 1; }
  echo "== $label: expire --org $org"
  expire first "$@"
  expire again "$@"
  dotnet "$app" verify --org "$org" "$@" | tr '\r' '\n' | grep -v '^\[' | tail -n 1
}

for database in $databases; do
  if [ "$database" = postgres ]; then
    PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}"
    pg="$(scripts/postgres.sh start)"; pg_started=1
    "$PGBIN/createdb" -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres pgbench
    "$PGBIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres pgbench >/dev/null 2>&1
    pgbench_tps=$("$PGBIN/pgbench" -c 16 -j 2 -T 15 -n -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres pgbench 2>/dev/null \
      | sed -nE 's/^tps = ([0-9.]+).*/\1/p' | head -n 1)
    echo "== PostgreSQL: pgbench TPC-B scale 10, 16 clients, 15 s: $pgbench_tps tps"
    run "PostgreSQL" --postgres "$pg"
    scripts/postgres.sh stop; pg_started=0
  else
    run "SQLite" --data-dir "$work/sqlite"
    rm -rf "$work/sqlite"
  fi
done
