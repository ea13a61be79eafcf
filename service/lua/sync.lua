-- Make the pool's numbers those of the rules: new numbers become free, removed ones stop
-- being handed out (a removed number still held stays with its visitor until the hold ends,
-- unrenewed: lease.lua). A number that another pool held when it was handed over (moves.py)
-- waits in `held` with that hold's end and no holder: the first lease after then frees it.
-- KEYS: 1 numbers  2 free  3 held  4 holder
-- ARGV: each number, then when its former pool's hold of it ends (ms; 0: none)
local wanted = {}
for i = 1, #ARGV, 2 do wanted[ARGV[i]] = tonumber(ARGV[i + 1]) end
for _, number in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not wanted[number] then
    redis.call('SREM', KEYS[1], number)
    redis.call('ZREM', KEYS[2], number)
  end
end
for number, ends in pairs(wanted) do
  redis.call('SADD', KEYS[1], number)
  if ends > 0 and redis.call('HEXISTS', KEYS[4], number) == 0 then
    redis.call('ZREM', KEYS[2], number)
    redis.call('ZADD', KEYS[3], 'GT', ends, number)  -- a replica that found a later end first keeps it
  elseif not redis.call('ZSCORE', KEYS[3], number) and not redis.call('ZSCORE', KEYS[2], number) then
    redis.call('ZADD', KEYS[2], 0, number)
  end
end
return #ARGV / 2
