-- The name a value from visitors is counted under: itself while the day's set of such
-- values (KEYS given by the caller, one per site, experiment and day) has room, else
-- '(other)'. Made-up page paths or goal names cannot grow the counts without bound.
local function capped(set, value, most, ttl)
  if redis.call('SISMEMBER', set, value) == 1 then return value end
  if redis.call('SCARD', set) >= tonumber(most) then return '(other)' end
  redis.call('SADD', set, value)
  redis.call('EXPIRE', set, ttl)
  return value
end
