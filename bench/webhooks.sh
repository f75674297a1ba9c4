#!/usr/bin/env bash
# The webhook benchmark of docs/performance.md ("Webhooks"), on PostgreSQL, bounded (about 3
# minutes with the defaults; nothing leaves 127.0.0.1):
#   1. a throwaway PostgreSQL and a small seeded organization (20k customers, 200k events),
#   2. the real server (Ledger:Webhooks:AllowPrivateTargets=true: the receiver is on 127.0.0.1) and a
#      local receiver (bench/LoyaltyLedger.Receiver: answers 204 at once and counts),
#   3. write throughput of bench/run.sh's write mix (bills and redemptions, 8 clients) with no
#      webhook endpoint, then with one endpoint subscribed to everything ("*"), delivering meanwhile,
#   4. deliveries per second: writes with the dispatcher off (Ledger:Webhooks:Dispatch=false) leave
#      a backlog; a server with it on then drains it, otherwise idle, and the receiver times it.
# Usage: bench/webhooks.sh [--seconds N] [--clients N]
# Environment: LEDGER_PG_PORT (default 55438), BENCH_HTTP_PORT (default 18438), BENCH_RECEIVER_PORT (default 18439).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20; clients=8
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift ;;
    --clients) clients="$2"; shift ;;
    *) echo "usage: $0 [--seconds N] [--clients N]" >&2; exit 2 ;;
  esac
  shift
done

export LEDGER_PG_PORT="${LEDGER_PG_PORT:-55438}"
url="http://127.0.0.1:${BENCH_HTTP_PORT:-18438}"
receiver_url="http://127.0.0.1:${BENCH_RECEIVER_PORT:-18439}"
key=bench-key; secret=bench-secret-0123
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
load=bench/LoyaltyLedger.Load/bin/Release/net10.0/LoyaltyLedger.Load.dll
receiver=bench/LoyaltyLedger.Receiver/bin/Release/net10.0/LoyaltyLedger.Receiver.dll
work="$(mktemp -d /tmp/loyaltyledger-webhook-bench.XXXXXX)"
server_pid=""; receiver_pid=""
customers=20000

cleanup() {
  for pid in "$server_pid" "$receiver_pid"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  scripts/postgres.sh stop >/dev/null || true
  if [ -n "${BENCH_KEEP_LOGS:-}" ]; then cp "$work"/*.log "$BENCH_KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for project in src/LoyaltyLedger bench/LoyaltyLedger.Load bench/LoyaltyLedger.Receiver; do dotnet build -c Release "$project" >/dev/null; done

wait_for() { # url
  for _ in $(seq 1 120); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$1 did not answer" >&2; cat "$work"/*.log >&2; exit 1
}

start_server() { # args: dispatch (true|false)
  Ledger__RateLimit__PermitsPerSecond=1000000 Ledger__RateLimit__Burst=1000000 \
  Ledger__Webhooks__AllowPrivateTargets=true Ledger__Webhooks__Dispatch="$1" \
    dotnet "$app" serve --postgres "$pg" --urls "$url" >"$work/server.log" 2>&1 &
  server_pid=$!
  wait_for "$url/health"
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

writes() { # prints the load tool's line
  dotnet "$load" write --url "$url" --key "$key" --secret "$secret" --clients "$clients" --seconds "$seconds" \
    --customers "$((customers / 2))-$customers" --store S001 | tail -n 1
}

stats() { curl -fs "$receiver_url/stats"; }
field() { sed -nE "s/.*\"$1\":([0-9.]+).*/\1/p"; }

wait_drained() { # waits until the receiver's count has not moved for 3 s (at most 10 minutes); prints the stats
  local previous=-1 still=0 now
  for _ in $(seq 1 600); do
    now=$(stats | field count)
    if [ "$now" = "$previous" ]; then still=$((still + 1)); [ "$still" -ge 3 ] && break; else still=0; fi
    previous=$now; sleep 1
  done
  stats
}

echo "== PostgreSQL: seeding $customers customers, 200000 events"
pg="$(scripts/postgres.sh start)"
dotnet "$app" seed --customers "$customers" --events 200000 --org-name bench --key-id "$key" --key-secret "$secret" --postgres "$pg" \
  | tr '\r' '\n' | grep -v '^\[' | tail -n 2 || true

dotnet "$receiver" --urls "$receiver_url" >"$work/receiver.log" 2>&1 &
receiver_pid=$!
wait_for "$receiver_url/stats"

start_server true
# Unmeasured warm-up: JIT and the connection pools.
dotnet "$load" write --url "$url" --key "$key" --secret "$secret" --clients "$clients" --seconds 10 \
  --customers "$((customers / 2))-$customers" --store S001 >/dev/null 2>&1 || true

echo "== writes, $clients clients, $seconds s each"
echo "   no webhook endpoint:        $(writes)"
curl -fs -u "$key:$secret" -X POST "$url/v1/webhooks" -H 'Content-Type: application/json' \
  -d "{\"url\":\"$receiver_url/hooks\",\"events\":[\"*\"]}" >/dev/null
before=$(stats | field count)
line=$(writes)
during=$(( $(stats | field count) - before ))
echo "   one endpoint, all events:   $line"
after=$(wait_drained)
echo "   delivered during the writes: $during; all delivered $(( $(echo "$after" | field count) - before )) (distinct ids in all: $(echo "$after" | field distinct))"
stop_server

echo "== deliveries per second to the local receiver (a backlog drained by an otherwise idle server)"
start_server false
writes >/dev/null
stop_server
curl -fs -X DELETE "$receiver_url/stats" >/dev/null
start_server true
drained=$(wait_drained)
count=$(echo "$drained" | field count)
window=$(awk -v a="$(echo "$drained" | field first)" -v b="$(echo "$drained" | field last)" 'BEGIN {printf "%.2f", b - a}')
echo "   delivered $count (distinct ids $(echo "$drained" | field distinct)) in $window s: $(awk -v n="$count" -v t="$window" 'BEGIN {printf "%.0f", (t > 0 ? n / t : 0)}') deliveries/s"
echo "   server peak memory: $(awk '/VmHWM/ {printf "%d MB", $2/1024}' "/proc/$server_pid/status")"
stop_server
