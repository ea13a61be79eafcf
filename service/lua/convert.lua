-- Credit a conversion to the visitor's cohort in one experiment, once per event id.
-- KEYS: 1 assign       hash  visitor id -> "variant|page|day" (see expose.lua)
--       2 converted    hash  "kind|visitor id" -> their cohort's day: the visitor already counts for this kind
--       3 seen         zset  event id -> ms: retries within the window are recognised
--       4 overflowed   hash  visitor id -> their cohort's day: visitors who got an overflow number
--       5 goals        set   the goal names of the conversion's day (capped.lua)
-- ARGV: 1 dedupe window ms  2 most goal names a day  3 the set's lifetime, seconds
--       4 the ledger's key prefix  5 a span's lifetime, seconds
--       6 visitor id  7 event id  8 now ms  9.. kinds ("goal:NAME" counts as "goal:(other)" past the most)
-- Counts in the cohort day's spans (spans.lua) 'u|PAGE|VARIANT|KIND', visitors who converted,
-- 'c|…' events, and 'x|…' events of overflowed visitors of the kinds that take them out: a call,
-- and so any conversion (ledger.BY_CALL); their forms, tel: clicks and goals count as anyone's.
-- Returns 'counted', 'duplicate', 'unexposed' or 'excluded' (the visitor overflowed, and it counts
-- in none of its kinds: a call).
local prefix, keep, vid, event, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local BY_CALL = {call = true, qualified_call = true, missed_call = true, any = true}
if redis.call('ZSCORE', KEYS[3], event) then return 'duplicate' end
redis.call('ZADD', KEYS[3], now, event)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[1])))
local assigned = redis.call('HGET', KEYS[1], vid)
if not assigned then return 'unexposed' end
local variant, page, day = string.match(assigned, '^(.-)|(.-)|(.*)$')
local excluded = redis.call('HEXISTS', KEYS[4], vid) == 1
local counted = false
for i = 9, #ARGV do
  local kind = ARGV[i]
  if string.sub(kind, 1, 5) == 'goal:' then kind = 'goal:' .. capped(KEYS[5], string.sub(kind, 6), ARGV[2], ARGV[3]) end
  if excluded and BY_CALL[kind] then
    count(prefix, keep, day, 'x', page, variant .. '|' .. kind, 1)
  else
    counted = true
    count(prefix, keep, day, 'c', page, variant .. '|' .. kind, 1)
    if redis.call('HSETNX', KEYS[2], kind .. '|' .. vid, day) == 1 then
      count(prefix, keep, day, 'u', page, variant .. '|' .. kind, 1)
    end
  end
end
if excluded and not counted then return 'excluded' end
return 'counted'
