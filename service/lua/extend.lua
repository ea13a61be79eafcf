-- Heartbeat: restart the hold of the visitor's current lease, if they still have it.
-- KEYS: 1 held  2 holder  3 visitor  4 leases  5 clock  6 numbers (see lease.lua)
-- ARGV: 1 hold ms  2 visitor id  3 now ms
-- Returns the number, or false when the visitor holds none (another visitor has it by now).
local now = math.max(tonumber(ARGV[3]), tonumber(redis.call('GET', KEYS[5]) or '0'))
local number = redis.call('HGET', KEYS[3], ARGV[2])
if not number then return false end
local id = redis.call('HGET', KEYS[2], number)
local lease = cjson.decode(redis.call('HGET', KEYS[4], id))
-- A number taken out of the pool stays until its hold ends, never renewed (lease.lua).
if redis.call('SISMEMBER', KEYS[6], number) == 0 then return lease.u >= now and number end
-- A hold that ended while nobody took the number (its page hidden, or back from the browser's
-- cache, for longer than the hold) goes on: the page shows it, a call to it is theirs.
lease.u = math.max(lease.u, now + tonumber(ARGV[1]))  -- a late heartbeat never shortens a hold
redis.call('HSET', KEYS[4], id, cjson.encode(lease))
redis.call('ZADD', KEYS[1], lease.u, number)
return number
