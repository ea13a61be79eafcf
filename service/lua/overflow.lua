-- Take an exposed visitor who got an overflow number out of the conversion rates.
-- KEYS: 1 assign  2 overflowed (hash visitor id -> their cohort's day)  3 overflow (hash "day|page|variant" -> visitors)
-- ARGV: 1 visitor id
local assigned = redis.call('HGET', KEYS[1], ARGV[1])
if not assigned then return 0 end
local variant, page, day = string.match(assigned, '^(.-)|(.-)|(.*)$')
if redis.call('HSETNX', KEYS[2], ARGV[1], day) == 0 then return 0 end
redis.call('HINCRBY', KEYS[3], day .. '|' .. page .. '|' .. variant, 1)
return 1
