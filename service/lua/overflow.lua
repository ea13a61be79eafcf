-- Take an exposed visitor who got an overflow number out of the conversion rates.
-- KEYS: 1 assign  2 overflowed (hash visitor id -> their cohort's day)
-- ARGV: 1 the ledger's key prefix  2 a span's lifetime, seconds  3 visitor id
-- Counts 'o|PAGE|VARIANT' (visitors overflowed) in their cohort day's spans (spans.lua).
local assigned = redis.call('HGET', KEYS[1], ARGV[3])
if not assigned then return 0 end
local variant, page, day = string.match(assigned, '^(.-)|(.-)|(.*)$')
if redis.call('HSETNX', KEYS[2], ARGV[3], day) == 0 then return 0 end
count(ARGV[1], ARGV[2], day, 'o', page, variant, 1)
return 1
