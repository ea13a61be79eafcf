-- End the visitor's hold now, if they hold a number of this pool: their new visit has a
-- number of another pool. The next lease of the pool reclaims it (lease.lua).
-- KEYS: lease.lua's (release.lua reads the visitor's hold)   ARGV: 1 visitor id  2 now ms
-- Returns the number let go, or false.
local now = math.max(tonumber(ARGV[2]), tonumber(redis.call('GET', KEYS[9]) or '0'))
local number, lease, id = holding(ARGV[1])
if not number then return false end
if lease.u > now then
  lease.u = now
  redis.call('HSET', KEYS[6], id, cjson.encode(lease))
  redis.call('ZADD', KEYS[3], now, number)
end
return number
