-- Count a visitor once per experiment, in the cohort of their first exposure.
-- KEYS: 1 assign   hash  visitor id -> "variant|page|day" of the first exposure
--       2 pages    set   the day's pages (capped.lua)
-- ARGV: 1 most pages a day  2 the set's lifetime, seconds  3 the ledger's key prefix  4 a span's lifetime, seconds
--       5 visitor id  6 variant  7 page  8 day
-- Counts 'e|PAGE|VARIANT' (visitors first exposed) in the day's spans (spans.lua).
if redis.call('HEXISTS', KEYS[1], ARGV[5]) == 1 then return 0 end
local page = capped(KEYS[2], ARGV[7], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[5], ARGV[6] .. '|' .. page .. '|' .. ARGV[8])
count(ARGV[3], ARGV[4], ARGV[8], 'e', page, ARGV[6], 1)
return 1
