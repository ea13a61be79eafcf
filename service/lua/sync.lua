-- Make the pool's numbers those of the rules: new numbers become free, removed ones stop
-- being handed out (a removed number still held stays with its visitor until the hold ends).
-- KEYS: 1 numbers  2 free  3 held   ARGV: the numbers
local wanted = {}
for _, number in ipairs(ARGV) do wanted[number] = true end
for _, number in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not wanted[number] then
    redis.call('SREM', KEYS[1], number)
    redis.call('ZREM', KEYS[2], number)
  end
end
for number in pairs(wanted) do
  redis.call('SADD', KEYS[1], number)
  if not redis.call('ZSCORE', KEYS[3], number) and not redis.call('ZSCORE', KEYS[2], number) then
    redis.call('ZADD', KEYS[2], 0, number)
  end
end
return #ARGV
