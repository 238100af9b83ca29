-- wrk script for the gateway benchmark: POSTs one small chat request with
-- the bearer key in $BENCH_KEY; prints a RESULT line that run.sh parses.
-- With BENCH_NEW_TEXT=1 every request's user message carries a number not
-- sent before, so no proxy can reuse the token count of an earlier one.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
local head = '{"model":"bench-model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello to the load test'
local tail = ', briefly please."}],"max_tokens":16}'
wrk.body = head .. tail

if os.getenv("BENCH_NEW_TEXT") == "1" then
  -- Numbers start from the clock, so a warm-up and the run after it
  -- never send the same one.
  local next_number = (os.time() % 100000) * 10000000
  function request()
    next_number = next_number + 1
    local text = head .. " number " .. string.format("%.0f", next_number) .. tail
    return wrk.format(nil, nil, nil, text)
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f errors=%d non2xx=%d\n",
    summary.requests, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, bad, summary.errors.status))
end
