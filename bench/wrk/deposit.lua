-- POST /api/v1/wallet/deposit by random buyers, each request with a unique Idempotency-Key.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local tokens
local n = 0

function init(args)
  start_thread()
  tokens = lines("tokens.txt")
end

function request()
  n = n + 1
  local headers = {
    ["Authorization"] = "Bearer " .. pick(tokens),
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("bench-%s-%d-%d", nonce, tid, n),
  }
  return wrk.format("POST", "/api/v1/wallet/deposit", headers, '{"amount":"1.00"}')
end
