-- Take an exposed visitor who got an overflow number out of the rates a call counts in
-- (ledger.BY_CALL): they could not be credited one.
-- KEYS: 1 assign  2 overflowed (hash visitor id -> their cohort's day)
--       3 converted (hash "kind|visitor id" -> their cohort's day, convert.lua)
-- ARGV: 1 the ledger's key prefix  2 a span's lifetime, seconds  3 visitor id  4.. those kinds
-- Counts 'o|PAGE|VARIANT' (visitors overflowed) in their cohort day's spans (spans.lua), and
-- moves what they had converted by before from 'u|…' to 'x|…', so those rates keep them out whole.
local assigned = redis.call('HGET', KEYS[1], ARGV[3])
if not assigned then return 0 end
local variant, page, day = string.match(assigned, '^(.-)|(.-)|(.*)$')
if redis.call('HSETNX', KEYS[2], ARGV[3], day) == 0 then return 0 end
count(ARGV[1], ARGV[2], day, 'o', page, variant, 1)
for i = 4, #ARGV do
  local kind = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], kind .. '|' .. ARGV[3]) == 1 then
    count(ARGV[1], ARGV[2], day, 'u', page, variant .. '|' .. kind, -1)
    count(ARGV[1], ARGV[2], day, 'x', page, variant .. '|' .. kind, 1)
  end
end
return 1
