-- Give back the pool's numbers whose holds ended before ARGV[1] (ms): what a lease does first
-- (lease.lua), for a pool where nobody has come since. KEYS: lease.lua's. Returns how many (at
-- most 100 a call).
return reclaim(tonumber(ARGV[1]))
