-- Erase a visitor from one of their leases (service.front.personal): their id, visit and client network go.
-- A lease still held gives its network's place back now, as its release would have (lease.lua),
-- which can no longer tell whose network it was.
-- KEYS: 1 holder  2 leases  3 networks (see lease.lua)   ARGV: 1 lease id
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local lease = cjson.decode(raw)
if lease.a and lease.a ~= '' and redis.call('HGET', KEYS[1], lease.n) == ARGV[1] then
  if redis.call('HINCRBY', KEYS[3], lease.a, -1) <= 0 then redis.call('HDEL', KEYS[3], lease.a) end
end
lease.v, lease.w, lease.a = '', '', ''
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(lease))
return 1
