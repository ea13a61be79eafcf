-- Log a conversion once: a retry, or the same conversion replayed from the spool, adds nothing.
-- KEYS: 1 entries stream  the site's conversions, in arrival order (service.tracking.journal)
--       2 logged  zset  conversion id -> ms it was logged: what the log holds
--       3 last call  string  when the site's latest call started (ms)
-- ARGV: 1 conversion id  2 now ms  3 retention ms  4 entry json  5 a call's start ms, else empty
--       6 the day's dimension key prefix, empty when the conversion has no visit  7 most values a day
--       8 the counters' lifetime, seconds  9 its kinds, comma-separated  10 its visit's id
--       11.. the dimensions' names, then the visit's values (dims.lua)
-- Returns 1 if logged now, 0 if it was before.
local now, oldest = tonumber(ARGV[2]), tonumber(ARGV[2]) - tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. oldest)
redis.call('XADD', KEYS[1], 'MINID', '~', math.max(0, oldest), '*', 'c', ARGV[4])
if ARGV[5] ~= '' and tonumber(ARGV[5]) > tonumber(redis.call('GET', KEYS[3]) or 0) then
  redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[3])  -- no call for the whole log window: forgotten
end
if ARGV[6] ~= '' then  -- by the visit's dimensions: the conversion, and the visit's first of its kind
  local names, values = dimensions_from(11)
  local marks = ARGV[6] .. 'converted'
  for kind in string.gmatch(ARGV[9] .. ',any', '[^,]+') do
    if kind ~= 'any' then by_dimensions(ARGV[6], names, values, 'c|' .. kind, ARGV[7], ARGV[8]) end
    if redis.call('HSETNX', marks, ARGV[10] .. '|' .. kind, 1) == 1 then
      by_dimensions(ARGV[6], names, values, 'u|' .. kind, ARGV[7], ARGV[8])
    end
  end
  redis.call('EXPIRE', marks, 172800, 'NX')  -- for the day and a late retry
end
return 1
