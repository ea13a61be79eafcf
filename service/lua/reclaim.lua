-- Give back the pool's numbers whose holds ended before ARGV[1] (ms): what a lease does first
-- (lease.lua), for a pool where nobody has come since. KEYS: lease.lua's. Returns how many (at
-- most 100 a call).
local released = reclaim(tonumber(ARGV[1]))
-- No hold left: no visitor and no network holds a number, whatever a lost lease left counted.
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('DEL', KEYS[4], KEYS[5], KEYS[10]) end
return released
