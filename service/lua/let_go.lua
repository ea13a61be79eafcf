-- End the visitor's hold now, if they hold a number of this pool: their new visit has a
-- number of another pool. The next lease of the pool reclaims it (lease.lua).
-- KEYS: 1 held  2 holder  3 visitor  4 leases  5 clock (see lease.lua)
-- ARGV: 1 visitor id  2 now ms
-- Returns the number let go, or false.
local now = math.max(tonumber(ARGV[2]), tonumber(redis.call('GET', KEYS[5]) or '0'))
local number = redis.call('HGET', KEYS[3], ARGV[1])
if not number then return false end
local id = redis.call('HGET', KEYS[2], number)
local lease = cjson.decode(redis.call('HGET', KEYS[4], id))
if lease.u > now then
  lease.u = now
  redis.call('HSET', KEYS[4], id, cjson.encode(lease))
  redis.call('ZADD', KEYS[1], now, number)
end
return number
