-- Log a conversion once: a retry, or the same conversion replayed from the spool, adds nothing.
-- KEYS: 1 entries stream  the site's conversions, in arrival order (service.tracking.journal)
--       2 logged  zset  conversion id -> ms it was logged: what the log holds
--       3 last call  string  when the site's latest call started (ms)
-- ARGV: 1 retention ms  2 most values a day  3 the counters' lifetime, seconds  4 the dimensions' names
--       5 conversion id  6 now ms  7 entry json  8 a call's start ms, else empty
--       9 the day's dimension key prefix, empty when the conversion has no visit
--      10 its kinds, comma-separated  11 its visit's id, empty for a call credited to nobody (no
--         visit converted: it counts as a conversion only)  12 the visit's values (dims.lua)
-- Returns 1 if logged now, 0 if it was before.
local now, oldest = tonumber(ARGV[6]), tonumber(ARGV[6]) - tonumber(ARGV[1])
if redis.call('ZSCORE', KEYS[2], ARGV[5]) then return 0 end
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. oldest)
redis.call('XADD', KEYS[1], 'MINID', '~', math.max(0, oldest), '*', 'c', ARGV[7])
if ARGV[8] ~= '' and tonumber(ARGV[8]) > tonumber(redis.call('GET', KEYS[3]) or 0) then
  redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[1])  -- no call for the whole log window: forgotten
end
if ARGV[9] ~= '' then  -- by the visit's dimensions: the conversion, and the visit's first of its kind
  local names, values = listed(ARGV[4]), listed(ARGV[12])
  local marks = ARGV[9] .. 'converted'
  for kind in string.gmatch(ARGV[10] .. ',any', '[^,]+') do
    if kind ~= 'any' then by_dimensions(ARGV[9], names, values, 'c|' .. kind, ARGV[2], ARGV[3]) end
    if ARGV[11] ~= '' and redis.call('HSETNX', marks, ARGV[11] .. '|' .. kind, 1) == 1 then
      by_dimensions(ARGV[9], names, values, 'u|' .. kind, ARGV[2], ARGV[3])
    end
  end
  redis.call('EXPIRE', marks, 172800, 'NX')  -- for the day and a late retry
end
return 1
