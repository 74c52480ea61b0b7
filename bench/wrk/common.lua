-- Shared by every scenario script (loaded with dofile): data files, per-thread status counts, and a
-- JSON summary written to $BENCH_OUT when the run ends.
-- Environment: BENCH_DATA (folder of the seeded data files), BENCH_OUT (result file),
-- BENCH_NONCE (makes idempotency keys unique across runs).

data_dir = os.getenv("BENCH_DATA") or "."
nonce = os.getenv("BENCH_NONCE") or tostring(os.time())

function lines(name)
  local found = {}
  for line in io.lines(data_dir .. "/" .. name) do
    if #line > 0 then found[#found + 1] = line end
  end
  if #found == 0 then error("no lines in " .. name) end
  return found
end

function pick(list)
  return list[math.random(#list)]
end

-- main state: number the threads so that each can make unique keys
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

-- thread states: count responses by status
counts = {}
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

local function seed_random()
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  for _ = 1, 10 do math.random() end
end

function start_thread()
  seed_random()
end

function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    if c then
      for status, n in pairs(c) do
        local key = tostring(status)
        statuses[key] = (statuses[key] or 0) + n
      end
    end
  end
  local parts = {}
  for status, n in pairs(statuses) do parts[#parts + 1] = string.format('"%s": %d', status, n) end
  local e = summary.errors
  local out = string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "non_2xx_3xx": %d, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, ' ..
    '"statuses": {%s}}',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ", "))
  local path = os.getenv("BENCH_OUT")
  if path then
    local f = assert(io.open(path, "w"))
    f:write(out, "\n")
    f:close()
  else
    io.write(out, "\n")
  end
end
