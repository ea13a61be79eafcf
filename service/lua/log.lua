-- Log a conversion once: a retry, or the same conversion replayed from the spool, adds nothing.
-- KEYS: 1 entries stream  the site's conversions, in arrival order (service.journal)
--       2 logged  zset  conversion id -> ms it was logged: what the log holds
-- ARGV: 1 conversion id  2 now ms  3 retention ms  4 entry json
-- Returns 1 if logged now, 0 if it was before.
local now, oldest = tonumber(ARGV[2]), tonumber(ARGV[2]) - tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. oldest)
redis.call('XADD', KEYS[1], 'MINID', '~', math.max(0, oldest), '*', 'c', ARGV[4])
return 1
