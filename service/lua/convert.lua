-- Credit a conversion to the visitor's cohort in one experiment, once per event id.
-- KEYS: 1 assign       hash  visitor id -> "variant|page|day" (see expose.lua)
--       2 converted    hash  "kind|visitor id" -> their cohort's day: the visitor already counts for this kind
--       3 conversions  hash  "day|page|variant|kind" -> visitors who converted
--       4 totals       hash  "day|page|variant|kind" -> events
--       5 seen         zset  event id -> ms: retries within the window are recognised
--       6 overflowed   hash  visitor id -> their cohort's day: visitors who got an overflow number
--       7 excluded     hash  "day|page|variant|kind" -> events of overflowed visitors
--       8 goals        set   the goal names of the conversion's day (capped.lua)
-- ARGV: 1 dedupe window ms  2 most goal names a day  3 the set's lifetime, seconds
--       4 visitor id  5 event id  6 now ms  7.. kinds ("goal:NAME" counts as "goal:(other)" past the most)
-- Returns 'counted', 'duplicate', 'unexposed' or 'excluded'.
local vid, event, now = ARGV[4], ARGV[5], tonumber(ARGV[6])
if redis.call('ZSCORE', KEYS[5], event) then return 'duplicate' end
redis.call('ZADD', KEYS[5], now, event)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. (now - tonumber(ARGV[1])))
local assigned = redis.call('HGET', KEYS[1], vid)
if not assigned then return 'unexposed' end
local variant, page, day = string.match(assigned, '^(.-)|(.-)|(.*)$')
local cohort = day .. '|' .. page .. '|' .. variant .. '|'
local excluded = redis.call('HEXISTS', KEYS[6], vid) == 1
for i = 7, #ARGV do
  local kind = ARGV[i]
  if string.sub(kind, 1, 5) == 'goal:' then kind = 'goal:' .. capped(KEYS[8], string.sub(kind, 6), ARGV[2], ARGV[3]) end
  if excluded then
    redis.call('HINCRBY', KEYS[7], cohort .. kind, 1)
  else
    redis.call('HINCRBY', KEYS[4], cohort .. kind, 1)
    if redis.call('HSETNX', KEYS[2], kind .. '|' .. vid, day) == 1 then
      redis.call('HINCRBY', KEYS[3], cohort .. kind, 1)
    end
  end
end
if excluded then return 'excluded' end
return 'counted'
