-- One read of bench/run.sh, for wrk: GETs of one path with the organization's credentials. wrk keeps
-- the connections open and times each request; this script counts the answers that are not 200 and
-- prints one line of key=value pairs.
-- Usage: wrk -t 2 -c CLIENTS -d SECONDSs --timeout 30s -s bench/wrk/reads.lua URL -- \
--          BASIC_CREDENTIALS PATH THREADS MAX_REQUESTS
-- BASIC_CREDENTIALS is base64 of key:secret; THREADS is wrk's -t. A run lasts its seconds and sends
-- at most MAX_REQUESTS requests: a thread that has sent its share stops (its rate is still counted
-- over the run's seconds, so for a measurement the bound is set far above what a run sends).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  -- Every request is the same, so it is formatted once.
  prepared = wrk.format("GET", args[2], { ["Authorization"] = "Basic " .. args[1] })
  -- Each of wrk's threads sends its share of the bound.
  max_requests = math.ceil(tonumber(args[4]) / tonumber(args[3]))
  answered, failed = 0, 0
end

function request()
  return prepared
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    failed = failed + 1
    if failed <= 3 then io.stderr:write(status .. " " .. body .. "\n") end
  end
  if answered >= max_requests then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local f = 0
  for _, t in ipairs(threads) do f = f + t:get("failed") end
  local errors = summary.errors
  f = f + errors.connect + errors.read + errors.write + errors.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format("requests=%d failed=%d rps=%.1f p50_ms=%.1f p99_ms=%.1f\n",
    summary.requests, f, summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
