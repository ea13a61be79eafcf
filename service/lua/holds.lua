-- The holds of number N around T, for support: the last COUNT that began at or before T and
-- the first COUNT after it, oldest first. A lease id names a lease of N only if its record
-- says so (attribute.lua says why).
-- KEYS: 1 leases  2 history of N   ARGV: 1 T ms  2 COUNT  3 N
-- Returns the lease records (json).
local at, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local holds = {}
local function add(id)
  local record = redis.call('HGET', KEYS[1], id)
  if record and cjson.decode(record).n == ARGV[3] then holds[#holds + 1] = record end
end
local before = redis.call('ZREVRANGEBYSCORE', KEYS[2], at, '-inf', 'LIMIT', 0, count)
for i = #before, 1, -1 do add(before[i]) end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. at, '+inf', 'LIMIT', 0, count)) do add(id) end
return holds
