-- The write mix of bench/run.sh, for wrk: two bills (POST /v1/transactions: points and two
-- alternate currencies) for each balance-checked redemption (POST /v1/redemptions; one beyond the
-- balance answers 422 and counts as a completed transaction), each with an Idempotency-Key of its
-- own, for customers drawn at random from a range. wrk keeps the connections open and times each
-- request; this script builds the requests, counts the answers by kind and prints one line of
-- key=value pairs.
-- Usage: wrk -t 2 -c CLIENTS -d SECONDSs --timeout 30s -s bench/wrk/writes.lua URL -- \
--          BASIC_CREDENTIALS FIRST_CUSTOMER LAST_CUSTOMER STORE_CODE RUN_ID THREADS MAX_REQUESTS
-- BASIC_CREDENTIALS is base64 of key:secret; THREADS is wrk's -t. A run lasts its seconds and sends
-- at most MAX_REQUESTS requests: a thread that has sent its share stops (its rate is still counted
-- over the run's seconds, so the bound is set far above what a run sends).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  authorization = "Basic " .. args[1]
  first, last = tonumber(args[2]), tonumber(args[3])
  store, run = args[4], args[5]
  -- Each of wrk's threads sends its share of the bound.
  max_requests = math.ceil(tonumber(args[7]) / tonumber(args[6]))
  math.randomseed(thread_number * 7919 + 1)
  sent, committed, refused, failed = 0, 0, 0, 0
end

function request()
  sent = sent + 1
  local key = run .. "-" .. thread_number .. "-" .. sent
  local customer = math.random(first, last)
  local path, body
  if math.random(3) ~= 1 then
    path = "/v1/transactions"
    body = string.format('{"customerId":%d,"billNumber":"%s","amount":%d.50,"storeCode":"%s"}',
      customer, key, math.random(5, 299), store)
  else
    path = "/v1/redemptions"
    body = string.format('{"customerId":%d,"points":"%d"}', customer, math.random(1, 19))
  end
  return wrk.format("POST", path,
    { ["Authorization"] = authorization, ["Content-Type"] = "application/json", ["Idempotency-Key"] = key }, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    committed = committed + 1
  elseif status == 422 then
    refused = refused + 1
  else
    failed = failed + 1
    if failed <= 3 then io.stderr:write(status .. " " .. body .. "\n") end
  end
  if committed + refused + failed >= max_requests then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local c, r, f = 0, 0, 0
  for _, t in ipairs(threads) do
    c, r, f = c + t:get("committed"), r + t:get("refused"), f + t:get("failed")
  end
  local errors = summary.errors
  f = f + errors.connect + errors.read + errors.write + errors.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format("seconds=%.1f committed=%d refused=%d failed=%d tps=%.1f committed_tps=%.1f p50_ms=%.1f p99_ms=%.1f\n",
    seconds, c, r, f, (c + r) / seconds, c / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
