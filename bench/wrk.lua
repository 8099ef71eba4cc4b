-- wrk script for bench/load.py: method and body from the environment, a cap on
-- the number of responses, and a one-line JSON summary for the caller to parse.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
local max_responses = tonumber(os.getenv("BENCH_MAX") or "1000000")
local seen = 0

-- With BENCH_BODIES (a file, one body per line), each request sends the next
-- body, once: one-shot tokens. Should they run out, the thread stops and the
-- last one is sent again, which the server refuses and wrk counts as an error.
local bodies_file = os.getenv("BENCH_BODIES")
if bodies_file then
  local bodies, next_body = {}, 1
  for line in io.lines(bodies_file) do
    bodies[#bodies + 1] = line
  end
  function request()
    local body = bodies[next_body]
    if body == nil then
      wrk.thread:stop()
      body = bodies[#bodies]
    end
    next_body = next_body + 1
    return wrk.format(nil, nil, nil, body)
  end
end

function response(status, headers, body)
  seen = seen + 1
  if seen >= max_responses then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.status + e.timeout))
end
