-- Count a visitor once per experiment, in the cohort of their first exposure.
-- KEYS: 1 assign   hash  visitor id -> "variant|page|day" of the first exposure
--       2 exposed  hash  "day|page|variant" -> visitors first exposed then
--       3 pages    set   the day's pages (capped.lua)
-- ARGV: 1 most pages a day  2 the set's lifetime, seconds  3 visitor id  4 variant  5 page  6 day
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then return 0 end
local page = capped(KEYS[3], ARGV[5], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4] .. '|' .. page .. '|' .. ARGV[6])
redis.call('HINCRBY', KEYS[2], ARGV[6] .. '|' .. page .. '|' .. ARGV[4], 1)
return 1
