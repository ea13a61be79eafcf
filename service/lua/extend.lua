-- Heartbeat: restart the hold of the visitor's lease of the number their page shows.
-- KEYS: lease.lua's (release.lua reads the visitor's hold)
-- ARGV: 1 hold ms  2 key prefix for per-number history  3 visitor id  4 now ms
--       5 the number their page shows ('' when the token does not say)
-- Returns the number, or false when the visitor holds none (another visitor has it by now).
local hold, vid = tonumber(ARGV[1]), ARGV[3]
local now = math.max(tonumber(ARGV[4]), tonumber(redis.call('GET', KEYS[9]) or '0'))
local number, lease, id = holding(vid)
if number then
  -- A number taken out of the pool stays until its hold ends, never renewed (lease.lua).
  if redis.call('SISMEMBER', KEYS[1], number) == 0 then return lease.u >= now and number end
  -- A hold that ended while nobody took the number (its page hidden, or back from the browser's
  -- cache, for longer than the hold) goes on: the page shows it, a call to it is theirs.
  lease.u = math.max(lease.u, now + hold)  -- a late heartbeat never shortens a hold
  redis.call('HSET', KEYS[6], id, cjson.encode(lease))
  redis.call('ZADD', KEYS[3], lease.u, number)
  return number
end
-- Their hold ended and the pool has given the number back: still free, and theirs last, it is
-- theirs again, under a lease from now with their last one's page, variants, visit and network.
number = ARGV[5]
lease = theirs_last(number, vid, ARGV[2])
if not lease then return false end
local history = ARGV[2] .. 'history:' .. number
id = tostring(redis.call('INCR', KEYS[7]))
lease.f, lease.u = now, now + hold
redis.call('HSET', KEYS[6], id, cjson.encode(lease))
redis.call('HSET', KEYS[4], number, id)
redis.call('HSET', KEYS[5], vid, number)
redis.call('ZREM', KEYS[2], number)
redis.call('ZADD', KEYS[3], lease.u, number)
redis.call('ZADD', history, now, id)
if lease.a and lease.a ~= '' then redis.call('HINCRBY', KEYS[10], lease.a, 1) end
return number
