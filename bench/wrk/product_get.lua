-- GET /api/v1/products/{id} over catalogue.txt (1,000 products; cached after the warm-up).
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local ids

function init(args)
  start_thread()
  ids = lines("catalogue.txt")
end

function request()
  return wrk.format("GET", "/api/v1/products/" .. pick(ids))
end
