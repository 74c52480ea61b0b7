-- GET /health/live: the cost of the HTTP stack alone (middleware, routing, JSON), no I/O.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

function init(args)
  start_thread()
end

function request()
  return wrk.format("GET", "/health/live")
end
