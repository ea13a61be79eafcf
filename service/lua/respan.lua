-- Move a ledger's counts kept the way they were before spans (fields 'DAY|PAGE|TAIL' of the
-- hashes 'exposed', 'overflow', 'conversions', 'totals' and 'excluded') into spans (spans.lua).
-- KEYS: 1 the old hash
-- ARGV: 1 the ledger's key prefix  2 a span's lifetime, seconds  3 the measure the hash counts  4.. fields
-- Returns how many fields went; a field that is gone already (another process moved it) is left.
local moved = 0
for i = 4, #ARGV do
  local n = redis.call('HGET', KEYS[1], ARGV[i])
  if n then
    local day, page, tail = string.match(ARGV[i], '^(%d%d%d%d%-%d%d%-%d%d)|(.-)|(.+)$')
    if day then count(ARGV[1], ARGV[2], day, ARGV[3], page, tail, tonumber(n)) end
    redis.call('HDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
