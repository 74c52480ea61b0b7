-- POST /api/v1/auth/login with the right password (bcrypt cost 12 on every request).
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local emails
local password = os.getenv("BENCH_PASSWORD")

function init(args)
  start_thread()
  emails = lines("logins.txt")
end

function request()
  local body = '{"email":"' .. pick(emails) .. '","password":"' .. password .. '"}'
  return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"}, body)
end
