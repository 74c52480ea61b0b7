-- GET /api/v1/products: the first catalogue page (cached in Redis after the first request).
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

function init(args)
  start_thread()
end

function request()
  return wrk.format("GET", "/api/v1/products")
end
