-- The holds of number N nearest a call at T that nobody held it at: when the last one before T
-- ended and when the next one after T began (ms), each false when the history has none. A call
-- seconds after a hold ended was made late; hours from any hold, a clock or zone written wrong.
-- KEYS: 1 leases  2 history of N   ARGV: 1 T ms  2 N
-- Returns {ended or false, began or false}.
local at = tonumber(ARGV[1])
local function lease(ids)  -- of N only (attribute.lua says why)
  local record = #ids > 0 and redis.call('HGET', KEYS[1], ids[1])
  local decoded = record and cjson.decode(record)
  return decoded and decoded.n == ARGV[2] and decoded
end
local before = lease(redis.call('ZREVRANGEBYSCORE', KEYS[2], at, '-inf', 'LIMIT', 0, 1))
local after = lease(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. at, '+inf', 'LIMIT', 0, 1))
return {before and before.u < at and before.u or false, after and after.f or false}
