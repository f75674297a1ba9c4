#!/usr/bin/env bash
# Server time of every support-console page for the heaviest customer of a seeded organization
# (docs/performance.md, "Support console"):
#   1. seeds an organization (SQLite in a temp directory by default; --postgres CONNSTRING for PostgreSQL),
#   2. starts the real server process, signs in to /console with the seed's admin key (curl, cookies),
#   3. requests each page --requests times after two unmeasured warm-up requests, one at a time, and
#      prints p50 / p95 / max of the server's own time for it (its Server-Timing header: the time to
#      the page's first byte, and a page is rendered whole before it is sent) and of curl's total.
# Usage: bench/console-pages.sh [--customers N] [--events N] [--requests N] [--postgres CONNSTRING]
#        bench/console-pages.sh --customer ID [--data-dir DIR | --postgres CONNSTRING] [--requests N]
#   (the second form measures an already seeded database, seeded with --key-id bench-key
#   --key-secret bench-secret-0123, for its customer ID).
# Environment: BENCH_HTTP_PORT (default 18438).
set -euo pipefail
cd "$(dirname "$0")/.."

customers=20000; events=1500000; requests=20; postgres=""; data_dir=""; heavy=""
while [ $# -gt 0 ]; do
  case "$1" in
    --customers) customers="$2"; shift ;;
    --events) events="$2"; shift ;;
    --requests) requests="$2"; shift ;;
    --postgres) postgres="$2"; shift ;;
    --data-dir) data_dir="$2"; shift ;;
    --customer) heavy="$2"; shift ;;
    *) echo "usage: $0 [--customers N] [--events N] [--requests N] [--postgres CONNSTRING] | --customer ID [--data-dir DIR | --postgres CONNSTRING]" >&2; exit 2 ;;
  esac
  shift
done

url="http://127.0.0.1:${BENCH_HTTP_PORT:-18438}"
key=bench-key; secret=bench-secret-0123
app=src/LoyaltyLedger/bin/Release/net10.0/LoyaltyLedger.dll
work="$(mktemp -d /tmp/loyaltyledger-console.XXXXXX)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$postgres" ]; then storage=(--postgres "$postgres"); else storage=(--data-dir "${data_dir:-$work/data}"); fi
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release src/LoyaltyLedger >/dev/null

if [ -z "$heavy" ]; then
  [ -n "$data_dir" ] && { echo "--data-dir needs --customer ID" >&2; exit 2; }
  echo "== seeding $customers customers, $events events (${storage[0]})"
  dotnet "$app" seed --customers "$customers" --events "$events" --org-name console-bench --key-id "$key" --key-secret "$secret" "${storage[@]}" \
    | tr '\r' '\n' | grep -v '^\[' | tee "$work/seed.log"
  heavy=$(sed -nE 's/.*heaviest customer ([0-9]+) .*/\1/p' "$work/seed.log")
fi

Ledger__ExpiryInterval=00:00:00 Ledger__RateLimit__PermitsPerSecond=1000000 Ledger__RateLimit__Burst=1000000 \
  dotnet "$app" serve "${storage[@]}" --urls "$url" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do curl -fs "$url/health" >/dev/null 2>&1 && break; sleep 0.5; done

jar="$work/cookies"
token() { curl -s -b "$jar" -c "$jar" "$url$1" | sed -nE 's/.*name="__RequestVerificationToken" value="([^"]+)".*/\1/p' | head -n 1; }
t=$(token /console/signin)
curl -s -o /dev/null -b "$jar" -c "$jar" "$url/console/signin" \
  --data-urlencode "_handler=signin" --data-urlencode "__RequestVerificationToken=$t" \
  --data-urlencode "Form.KeyId=$key" --data-urlencode "Form.Secret=$secret"

customer_page="/console/customers/$heavy"
if [ "$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" "$url$customer_page")" != 200 ]; then
  echo "could not sign in to the console or open $customer_page:" >&2; tail -n 20 "$work/server.log" >&2; exit 1
fi
html=$(curl -s -b "$jar" "$url$customer_page")
newest_event=$(echo "$html" | sed -nE 's/.*data-event="([0-9]+)".*/\1/p' | head -n 1)
card=$(echo "$html" | sed -nE 's/.*<li><code>([^<]+)<\/code>.*/\1/p' | head -n 1)
events_total=$(echo "$html" | sed -nE 's/.*Ledger <span class="muted">([0-9]+) events in all.*/\1/p' | head -n 1)
year_ago=$(( ($(date +%s) - 365 * 86400) * 1000 ))
echo "== heaviest customer $heavy: $events_total events; newest event $newest_event; card $card"

measure() { # args: label path
  local label="$1" path="$2" i line
  : >"$work/times"
  for i in $(seq 1 $((requests + 2))); do
    line=$(curl -s -o /dev/null -D - -w 'total=%{time_total}\n' -b "$jar" "$url$path" | tr -d '\r' \
      | awk -F'[=;: ]+' '/^[Ss]erver-[Tt]iming/ {for (k = 1; k <= NF; k++) if ($k == "dur") s = $(k + 1)} /^total=/ {t = $2 * 1000} END {print s, t}')
    [ "$i" -gt 2 ] && echo "$line" >>"$work/times"
  done
  local curl_p50
  curl_p50=$(sort -n -k2 "$work/times" | awk '{t[NR] = $2} END {print t[int((NR + 1) / 2)]}')
  sort -n -k1 "$work/times" | awk -v label="$label" -v curl="$curl_p50" '{s[NR] = $1} END {
    n = NR; printf "   %-48s server p50 %7.1f ms  p95 %7.1f ms  max %7.1f ms   (curl p50 %7.1f ms)\n", label, s[int((n + 1) / 2)], s[int(n * 0.95 + 0.999)], s[n], curl }'
}

first_dashboard=$(curl -s -o /dev/null -D - -b "$jar" "$url/console/dashboard" | tr -d '\r' | sed -nE 's/^[Ss]erver-[Tt]iming: app;dur=(.*)/\1/p')
echo "== the dashboard's first view after the seed (adds up and keeps 89 past days): $first_dashboard ms"
echo "== $requests requests per page, one at a time, after 2 unmeasured"
measure "search by card (answers a redirect)" "/console/search?by=card&q=$card"
measure "customer (90 days)" "$customer_page"
measure "customer, chart of 30 days" "$customer_page?range=30"
measure "customer, chart of a year" "$customer_page?range=365"
measure "customer, chart of all" "$customer_page?range=all"
measure "customer, ledger a year back" "$customer_page?before=$year_ago-9223372036854775807#ledger"
measure "customer, ledger of debits only" "$customer_page?lt=DEBIT"
measure "customer, ledger of a rare line (stops at 5,000)" "$customer_page?lt=OPENING_BALANCE"
measure "customer, ledger of one month" "$customer_page?from=$(date -u -d '60 days ago' +%F)&to=$(date -u -d '30 days ago' +%F)"
measure "event (the newest)" "/console/events/$newest_event"
measure "goodwill form" "$customer_page/adjust"
measure "group 1" "/console/groups/1"
measure "program dashboard" "/console/dashboard"
measure "API keys" "/console/admin/keys"
echo "   server peak memory: $(awk '/VmHWM/ {printf "%d MB", $2/1024}' "/proc/$server_pid/status")"
