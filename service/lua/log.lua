-- Log a conversion once: a retry, or the same conversion replayed from the spool, adds nothing.
-- KEYS: 1 entries stream  the site's conversions by id, in arrival order (service.tracking.journal)
--       2 logged  zset  conversion id -> ms it was logged: what the log holds
--       3 last call  string  when the site's latest call started (ms)
--       4 bodies  hash  conversion id -> entry json: what each says, apart, for an erasure to reach
-- ARGV: 1 retention ms  2 most values a day  3 the counters' lifetime, seconds  4 the dimensions' names
--       5 how long a visit may still convert after its first day begins, seconds (its record's lifetime)
--       6 conversion id  7 now ms  8 entry json  9 a call's start ms, else empty
--      10 the conversion's day's dimension key prefix, empty when the conversion has no visit
--      11 its kinds, comma-separated  12 its visit's id, empty for a call credited to nobody (no
--         visit converted: it counts as a conversion only)  13 the visit's values (dims.lua)
--      14 the dimension key prefix of the day its visit started
-- Returns 1 if logged now, 0 if it was before.
local now, oldest = tonumber(ARGV[7]), tonumber(ARGV[7]) - tonumber(ARGV[1])
if redis.call('ZSCORE', KEYS[2], ARGV[6]) then return 0 end
-- Conversions past the retention go, with their bodies: a bounded batch each time.
local aged = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. oldest, 'LIMIT', 0, 500)
if #aged > 0 then
  redis.call('HDEL', KEYS[4], unpack(aged))
  redis.call('ZREM', KEYS[2], unpack(aged))
end
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('HSET', KEYS[4], ARGV[6], ARGV[8])
redis.call('XADD', KEYS[1], 'MINID', '~', math.max(0, oldest), '*', 'i', ARGV[6])
if ARGV[9] ~= '' and tonumber(ARGV[9]) > tonumber(redis.call('GET', KEYS[3]) or 0) then
  redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[1])  -- no call for the whole log window: forgotten
end
if ARGV[10] ~= '' then
  -- By the visit's dimensions: the conversion on its own day; the visit as converted on the day it
  -- started, where it counts as a visit, once for each kind, whichever day it converts on.
  local names, values = listed(ARGV[4]), listed(ARGV[13])
  local marks = ARGV[14] .. 'converted'
  for kind in string.gmatch(ARGV[11] .. ',any', '[^,]+') do
    if kind ~= 'any' then by_dimensions(ARGV[10], names, values, 'c|' .. kind, ARGV[2], ARGV[3]) end
    if ARGV[12] ~= '' and redis.call('HSETNX', marks, ARGV[12] .. '|' .. kind, 1) == 1 then
      by_dimensions(ARGV[14], names, values, 'u|' .. kind, ARGV[2], ARGV[3])
    end
  end
  redis.call('EXPIRE', marks, ARGV[5], 'NX')
end
return 1
