-- POST /api/v1/orders: wallet purchases by random buyers.
-- BENCH_PRODUCTS: which product file to pick from (products.txt: thousands; hot.txt: one product).
-- BENCH_IDEMPOTENCY=1 sends a unique Idempotency-Key with every request.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local tokens, products, keyed
local n = 0

function init(args)
  start_thread()
  tokens = lines("tokens.txt")
  products = lines(os.getenv("BENCH_PRODUCTS") or "products.txt")
  keyed = os.getenv("BENCH_IDEMPOTENCY") == "1"
end

function request()
  n = n + 1
  local headers = {
    ["Authorization"] = "Bearer " .. pick(tokens),
    ["Content-Type"] = "application/json",
  }
  if keyed then headers["Idempotency-Key"] = string.format("bench-%s-%d-%d", nonce, tid, n) end
  local body = '{"productId":"' .. pick(products) .. '","paymentMethod":"WALLET","quantity":1}'
  return wrk.format("POST", "/api/v1/orders", headers, body)
end
