-- Take numbers out of the pool that listed them before, for the pools that list them now
-- (moves.py): this pool no longer leases them, nor renews their holds (lease.lua, extend.lua).
-- KEYS: 1 numbers  2 free  3 held (see lease.lua)   ARGV: the numbers
-- Returns, for each, when its hold here ends (ms), or 0: none here.
local ends = {}
for i, number in ipairs(ARGV) do
  redis.call('SREM', KEYS[1], number)
  redis.call('ZREM', KEYS[2], number)
  ends[i] = tonumber(redis.call('ZSCORE', KEYS[3], number) or '0')
end
return ends
