#!/usr/bin/env bash
# The performance benchmark of docs/performance.md, end to end:
#   1. starts a throwaway PostgreSQL (scripts/postgres.sh; fsync on, synchronous_commit on),
#   2. seeds an organization with the seed command (--quick: 50k customers / 1M events;
#      default: 1M customers / 20M events),
#   3. starts the real server process against it and measures with wrk (bench/wrk/*.lua), at 8 and
#      32 clients, write throughput over HTTP (bills and balance-checked redemptions, each with an
#      Idempotency-Key)
#      and, on the same server in the same run, pgbench TPC-B; prints both and their ratio;
#      and the same write mix on a second organization, seeded alike (same random seed, same
#      history) but with tiers (bench/tier-policy.json: 3 tiers, multipliers 1, 1.5 and 2, upgrade
#      bonuses; every owner's tier seeded), back to back with the writes without tiers (in turns:
#      without first at 8 clients, with first at 32), and the ratio of the two,
#   4. measures read latency (p50, p99 at 32 clients) of the points-ledger read and the vault history
#      for a light and a heavy customer at page 0, 100 and 1000, and on PostgreSQL each read's
#      requests/s against pgbench -S (select-only, 32 clients) on the same server,
#   5. repeats writes and reads on SQLite at a smaller scale,
#   6. reports each server's peak memory (VmHWM), then stops everything and removes the data.
# Usage: bench/run.sh [--quick] [--seconds N] [--no-tiers]   (--no-tiers: skip the tiered organization)
# Needs wrk (Debian: apt-get install wrk).
# Environment: LEDGER_PG_PORT (default 55437), BENCH_HTTP_PORT (default 18437: below Linux's
# ephemeral range, 32768-60999, where an outgoing connection can already hold the port).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; seconds=20; tiers=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --seconds) seconds="$2"; shift ;;
    --no-tiers) tiers=0 ;;
    *) echo "usage: $0 [--quick] [--seconds N] [--no-tiers]" >&2; exit 2 ;;
  esac
  shift
done
# Reads: 3 s per configuration at either scale (several thousand requests, so that the p99 is not
# decided by the few slowest of a short burst); at most 100,000 requests, far above what 3 s hold here
# (a thread that reaches its share stops sending, and the rate is still over the 3 s).
read_seconds=3; read_max_requests=100000
if [ "$quick" = 1 ]; then
  pg_customers=50000; pg_events=1000000; lite_customers=20000; lite_events=400000
else
  pg_customers=1000000; pg_events=20000000; lite_customers=100000; lite_events=2000000
fi

export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55437}"
http_port="${BENCH_HTTP_PORT:-18437}"
url="http://127.0.0.1:$http_port"
key=bench-key; secret=bench-secret-0123
tiers_key=bench-tiers-key   # the tiered organization's admin key (same secret)
tier_policy=bench/tier-policy.json
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
work="$(mktemp -d /tmp/loyaltyledger-bench.XXXXXX)"
server_pid=""

cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  scripts/postgres.sh stop || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
command -v wrk >/dev/null || { echo "bench/run.sh needs wrk (Debian: apt-get install wrk)" >&2; exit 1; }
dotnet build -c Release src/LoyaltyLedger >/dev/null

start_server() { # args: storage options...
  # The per-key rate limit is lifted: the benchmark measures the ledger, not the limiter.
  Ledger__RateLimit__PermitsPerSecond=1000000 Ledger__RateLimit__Burst=1000000 \
    dotnet "$app" serve "$@" --urls "$url" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 120); do
    curl -fs "$url/health" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 1
}

cpu_ms() { # the server process's CPU time so far, user + system, in ms
  awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) * 1000 / hz}' "/proc/$server_pid/stat"
}

stop_server() {
  echo "   server peak memory: $(awk '/VmHWM/ {printf "%d MB", $2/1024}' "/proc/$server_pid/status")"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

# The ledger after the run's writes: every invariant `verify` checks (balances against lines and
# lots, the kept counts, the page numbers), with the time it took; a violation fails the run.
verify() { # args: storage options...
  local started=$SECONDS out
  if out=$(dotnet "$app" verify "$@" 2>&1); then
    echo "   verify: $(echo "$out" | tail -n 1 | sed 's/^ *//') ($(echo "$out" | sed -nE 's/^ *(organizations .*)/\1/p'); $((SECONDS - started)) s)"
  else
    echo "   verify FAILED:"; echo "$out" | tail -n 20; exit 1
  fi
}

seed() { # args: customers events storage options...
  local customers="$1" events="$2"; shift 2
  dotnet "$app" seed --customers "$customers" --events "$events" --org-name "bench" --key-id "$key" --key-secret "$secret" "$@" \
    | tee "$work/seed.log" | tr '\r' '\n' | grep -v '^\[' || true
  heavy=$(sed -nE 's/.*heaviest customer ([0-9]+) .*/\1/p' "$work/seed.log")
  heavy_account=$(sed -nE 's/.*heaviest customer [0-9]+ \([0-9,]+ events, account ([A-Z0-9]+)\).*/\1/p' "$work/seed.log")
  light=$(sed -nE 's/.*light customer ([0-9]+) .*/\1/p' "$work/seed.log")
  light_account=$(sed -nE 's/.*light customer [0-9]+ \(account ([A-Z0-9]+)\).*/\1/p' "$work/seed.log")
  program=$(sed -nE 's/.*program ([0-9]+);.*/\1/p' "$work/seed.log")
  last_customer=$customers
}

seed_tiers() { # args: customers events storage options...
  # The same customers and history as seed() (the same random seed), in an organization of its own
  # whose program has the tiers of $tier_policy, every owner's tier counted from its history; no
  # period is due (an evaluation is up to date), as on a service whose lifecycle runs every day.
  local customers="$1" events="$2"; shift 2
  dotnet "$app" seed --customers "$customers" --events "$events" --org-name "bench-tiers" --key-id "$tiers_key" --key-secret "$secret" \
    --tiers "$tier_policy" --tiers-due 0 "$@" | tee "$work/seed-tiers.log" | tr '\r' '\n' | grep -v '^\[' | grep -E 'seeded in|tiers:' || true
  tiers_program=$(sed -nE 's/.*program ([0-9]+);.*/\1/p' "$work/seed-tiers.log")
}

configure_tiers() {
  # The policy through the API as well: the same document, so the answer is 200 and nothing changes.
  local status
  status=$(curl -s -o "$work/tiers.json" -w '%{http_code}' -u "$tiers_key:$secret" -X PUT "$url/v1/programs/$tiers_program/tiers" \
    -H 'Content-Type: application/json' --data-binary @"$tier_policy")
  if [ "$status" != 200 ]; then echo "PUT /v1/programs/$tiers_program/tiers answered $status: $(cat "$work/tiers.json")" >&2; exit 1; fi
  echo "   tiers on program $tiers_program of bench-tiers: $(tr -d ' \n' <"$work/tiers.json" | cut -c1-400)"
}

# The load generator: wrk, two threads, each connection a client that sends its next request when
# the last is answered. It is written in C, as pgbench is, so the ledger's client takes about as
# little of the two shared cores as the reference's does (LoyaltyLedger.Load, on .NET's HttpClient,
# took 0.3 ms of CPU per write at 32 clients and 0.6 ms at 8, which the server and PostgreSQL lost).
credentials() { printf '%s:%s' "$1" "$secret" | base64 -w0; }
load_writes() { # args: clients seconds [key]; prints the line of bench/wrk/writes.lua
  # Writers use the lighter half of the customers, so concurrent postings rarely share a wallet.
  # Each run's Idempotency-Keys start with a random run id.
  wrk -t 2 -c "$1" -d "${2}s" --timeout 30s -s bench/wrk/writes.lua "$url" -- "$(credentials "${3:-$key}")" \
    "$((last_customer / 2))" "$last_customer" S001 "$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" 2 2000000 | tail -n 1
}
load_reads() { # args: path seconds max-requests; prints the line of bench/wrk/reads.lua
  wrk -t 2 -c 32 -d "${2}s" --timeout 30s -s bench/wrk/reads.lua "$url" -- "$(credentials "$key")" "$1" 2 "$3" | tail -n 1
}

writes() { # args: clients [key]
  # The server's own CPU per request is printed too: on a shared machine it moves far less than
  # throughput does. On SQLite, so is the one writer's utilization (ledger.sqlite.writer.busy over
  # the run's seconds): every posting goes through that writer, and near 1 it is the limit.
  local before busy out n
  before=$(cpu_ms); busy=$(metric ledger_sqlite_writer_busy_seconds_total)
  out="clients=$1 $(load_writes "$1" "$seconds" "${2:-$key}" || true)"
  n=$(echo "$out" | sed -nE 's/.* committed=([0-9]+) refused=([0-9]+).*/\1 \2/p' | awk '{print $1 + $2}')
  echo "$out server_cpu_ms_per_request=$(awk -v a="$before" -v b="$(cpu_ms)" -v n="${n:-0}" 'BEGIN {printf "%.2f", n ? (b - a) / n : 0}')$(
    awk -v a="$busy" -v b="$(metric ledger_sqlite_writer_busy_seconds_total)" -v t="$seconds" 'BEGIN {if (b > a) printf " sqlite_writer_utilization=%.2f", (b - a) / t}')"
}

tps_of() { echo "$1" | sed -nE 's/.* tps=([0-9.]+).*/\1/p'; }
cpu_of() { echo "$1" | sed -nE 's/.* server_cpu_ms_per_request=([0-9.]+).*/\1/p'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

metric() { # a counter's value from the server's /metrics (0 when it has none)
  { curl -s "$url/metrics" || true; } | awk -v name="$1" '$1 ~ "^" name "([{]|$)" {v = $2} END {print v + 0}'
}

read_paths() { # every read measured below, as paths
  echo "/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue=$light&source=INSTORE&limit=10&offset=0"
  echo "/api/v1.0/LoyaltyVault/Account/$light_account/LoyaltyPrograms/$program/History?limit=10&offset=0"
  for page in 0 100 1000; do
    echo "/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue=$heavy&source=INSTORE&limit=10&offset=$page"
    echo "/api/v1.0/LoyaltyVault/Account/$heavy_account/LoyaltyPrograms/$program/History?limit=10&offset=$((page * 10))"
  done
}

warm_up() {
  # Unmeasured: the server's first seconds are spent compiling (tiered JIT, then profile-guided
  # recompilation), which a long-running server has long finished. Writes and every read measured
  # below, in rounds, until a round compiles for less than 50 ms (the runtime's own
  # dotnet.jit.compilation.time), or 12 rounds: with the two cores busy, the background compiler
  # takes tens of seconds to reach the last methods of a read, and a short warm-up measured the
  # first read configurations half compiled.
  local round jit before
  load_writes 8 10 >/dev/null 2>&1 || true
  if [ "$tiers" = 1 ]; then load_writes 8 5 "$tiers_key" >/dev/null 2>&1 || true; fi
  for round in $(seq 1 12); do
    before=$(metric dotnet_jit_compilation_time_seconds_total)
    load_writes 32 3 >/dev/null 2>&1 || true
    if [ "$tiers" = 1 ]; then load_writes 32 2 "$tiers_key" >/dev/null 2>&1 || true; fi
    while read -r path; do
      load_reads "$path" 1 1500 </dev/null >/dev/null 2>&1 || true
    done < <(read_paths)
    jit=$(awk -v a="$before" -v b="$(metric dotnet_jit_compilation_time_seconds_total)" 'BEGIN {printf "%d", (b - a) * 1000}')
    [ "$jit" -lt 50 ] && break
  done
  echo "   warm-up: $round rounds of writes and every read; the last compiled for $jit ms"
  jit_start=$(metric dotnet_jit_compilation_time_seconds_total)
}

jit_since_warm_up() { # what the JIT compiled while the figures were measured, in ms
  awk -v a="$jit_start" -v b="$(metric dotnet_jit_compilation_time_seconds_total)" 'BEGIN {printf "%d", (b - a) * 1000}'
}

read_one() { # args: path
  # Unmeasured first: 4 requests from each client, so the database's cache and the server's code
  # for this read are warm. On PostgreSQL, also how many reads waited for a read slot, on average
  # over the measured run (the rate of ledger.postgres.read.wait, read from /metrics after that
  # warm-up): of the 32 in flight, those queued in the server, not in the database.
  local out before after
  load_reads "$1" 1 128 >/dev/null 2>&1 || true
  before=$(metric ledger_postgres_read_wait_seconds_total)
  out="clients=32 $(load_reads "$1" "$read_seconds" "$read_max_requests" || true)"
  after=$(metric ledger_postgres_read_wait_seconds_total)
  echo "$out$(echo "$out" | sed -nE 's/.*requests=([0-9]+) .*rps=([0-9.]+).*/\1 \2/p' \
    | awk -v grown="$(awk -v a="$before" -v b="$after" 'BEGIN {print b - a}')" '{if (grown > 0 && $2 > 0) printf " waiting_for_a_read_slot=%.1f", grown / ($1 / $2)}')"
}

select_tps=""
against_select() { # a read's requests/s against pgbench -S on the same server, when measured (PostgreSQL)
  [ -n "$select_tps" ] || return 0
  echo "   ratio/pgbench -S = $(ratio "$(echo "$1" | sed -nE 's/.* rps=([0-9.]+).*/\1/p')" "$select_tps")"
}

reads() {
  # A light customer has a handful of events: only its page 0 exists (pages 100 and 1000 answer
  # 404 at once); the heavy customer is read at pages 0, 100 and 1000.
  for who in light heavy; do
    if [ "$who" = light ]; then id=$light; account=$light_account; pages="0"; else id=$heavy; account=$heavy_account; pages="0 100 1000"; fi
    for page in $pages; do
      r1=$(read_one "/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue=$id&source=INSTORE&limit=10&offset=$page")
      r2=$(read_one "/api/v1.0/LoyaltyVault/Account/$account/LoyaltyPrograms/$program/History?limit=10&offset=$((page * 10))")
      echo "   $who customer $id page $page: points-ledger $r1$(against_select "$r1")"
      echo "   $who customer $id page $page: vault history  $r2$(against_select "$r2")"
    done
  done
}

echo "== PostgreSQL: seeding $pg_customers customers, $pg_events events"
pg="$(scripts/postgres.sh start)"
"$PGBIN/psql" -q -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres -c "SHOW fsync" -c "SHOW synchronous_commit" -At | paste -sd' ' | sed 's/^/   fsync, synchronous_commit: /'
seed "$pg_customers" "$pg_events" --postgres "$pg"
[ "$tiers" = 1 ] && seed_tiers "$pg_customers" "$pg_events" --postgres "$pg"
"$PGBIN/createdb" -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres pgbench
"$PGBIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres pgbench >/dev/null 2>&1
start_server --postgres "$pg"
[ "$tiers" = 1 ] && configure_tiers
warm_up
echo "== PostgreSQL writes ($seconds s per run; pgbench TPC-B scale 10 on the same server$([ "$tiers" = 1 ] && echo "; then the tiered organization"))"
for clients in 8 32; do
  # The two ledger runs go back to back, in turns (without first at 8 clients, with tiers first at
  # 32), so neither always inherits what the other, or pgbench's flush, left behind.
  tiered=""
  if [ "$tiers" = 1 ] && [ "$clients" = 32 ]; then tiered=$(writes "$clients" "$tiers_key"); fi
  ours=$(writes "$clients")
  if [ "$tiers" = 1 ] && [ -z "$tiered" ]; then tiered=$(writes "$clients" "$tiers_key"); fi
  bench=$("$PGBIN/pgbench" -c "$clients" -j 2 -T "$seconds" -n -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres pgbench 2>/dev/null \
    | sed -nE 's/^tps = ([0-9.]+).*/\1/p' | head -n 1)
  ledger_tps=$(tps_of "$ours")
  echo "   $clients clients: ledger $ours"
  echo "   $clients clients: pgbench tps=$bench   ratio ledger/pgbench = $(ratio "$ledger_tps" "$bench")"
  if [ "$tiers" = 1 ]; then
    echo "   $clients clients: ledger with tiers $tiered"
    echo "   $clients clients: ratio with tiers/without = $(ratio "$(tps_of "$tiered")" "$ledger_tps")   with tiers/pgbench = $(ratio "$(tps_of "$tiered")" "$bench")   server CPU per request with tiers/without = $(ratio "$(cpu_of "$tiered")" "$(cpu_of "$ours")")"
  fi
done
# The reads' reference: pgbench's select-only run (one primary-key lookup per transaction) at the
# same 32 clients on the same server.
select_tps=$("$PGBIN/pgbench" -S -c 32 -j 2 -T "$seconds" -n -h 127.0.0.1 -p "$LEDGER_PG_PORT" -U postgres pgbench 2>/dev/null \
  | sed -nE 's/^tps = ([0-9.]+).*/\1/p' | head -n 1)
echo "== PostgreSQL reads (32 clients, $read_seconds s each, limit 10; pgbench -S at 32 clients: $select_tps tps)"
reads
echo "   JIT compilation during the measurements above: $(jit_since_warm_up) ms"
select_tps=""
stop_server
verify --postgres "$pg"
scripts/postgres.sh stop

echo "== SQLite: seeding $lite_customers customers, $lite_events events"
seed "$lite_customers" "$lite_events" --data-dir "$work/sqlite"
[ "$tiers" = 1 ] && seed_tiers "$lite_customers" "$lite_events" --data-dir "$work/sqlite"
start_server --data-dir "$work/sqlite"
[ "$tiers" = 1 ] && configure_tiers
warm_up
echo "== SQLite writes ($seconds s per run$([ "$tiers" = 1 ] && echo "; then the tiered organization"))"
for clients in 8 32; do
  tiered=""
  if [ "$tiers" = 1 ] && [ "$clients" = 32 ]; then tiered=$(writes "$clients" "$tiers_key"); fi
  ours=$(writes "$clients")
  if [ "$tiers" = 1 ] && [ -z "$tiered" ]; then tiered=$(writes "$clients" "$tiers_key"); fi
  echo "   $clients clients: ledger $ours"
  if [ "$tiers" = 1 ]; then
    echo "   $clients clients: ledger with tiers $tiered"
    echo "   $clients clients: ratio with tiers/without = $(ratio "$(tps_of "$tiered")" "$(tps_of "$ours")")   server CPU per request with tiers/without = $(ratio "$(cpu_of "$tiered")" "$(cpu_of "$ours")")"
  fi
done
echo "== SQLite reads (32 clients, $read_seconds s each, limit 10)"
reads
echo "   JIT compilation during the measurements above: $(jit_since_warm_up) ms"
stop_server
verify --data-dir "$work/sqlite"
