-- wrk script: rotate over many requests and print one JSON line with throughput and latency percentiles.
-- bench/serving.py sets REQUESTS_FILE (one request per line: "GET<TAB>path" or "POST<TAB>path<TAB>json body")
-- and optionally PACE_MS (delay before each request on a connection, for a paced run below saturation) and START
-- (where in the file the rotation starts: warm-up runs start at different places, so that the requests do not fall
-- on the same connections, and so the same server workers, run after run).

local file = os.getenv("REQUESTS_FILE")
local pace = tonumber(os.getenv("PACE_MS") or "0")
local start = tonumber(os.getenv("START") or "0")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local reqs = {}
local i = 0

function init(args)
  for line in io.lines(file) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    if method == "POST" then
      reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
    else
      reqs[#reqs + 1] = wrk.format("GET", path)
    end
  end
  i = (tid * 7919 + start) % #reqs
end

function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end

if pace > 0 then
  function delay()
    return pace
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d,"mean_us":%.1f,"stdev_us":%.1f,"max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9)))
end
