-- Record a call once, and decide whether it is a target call.
-- KEYS: 1 calls  hash call id -> record json
-- ARGV: 1 call id  2 record json (an object, without unique and qualified)  3 caller hash ('' when hidden)  4 start ms
--       5 uniqueness window ms  6 talk seconds  7 qualifying talk seconds
--       8 key prefix for per-caller history (same hash tag)
--       9 '1' when the called number is one of the site's, else '0': a call to another number is
--         no call to the site, neither unique nor a target call, and leaves no history
--       10 why the call is no target call whatever the caller did before ('missed', 'short' or
--         'not_site_number'), or '' when it may be one
-- Returns {record json, 1 if this call id was seen before else 0}.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {existing, 1} end
local start, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local ours = ARGV[9] == '1'
local unique, target = ours, ours and tonumber(ARGV[6]) >= tonumber(ARGV[7])
-- A caller's calls and target calls are wanted only for the uniqueness window: then the keys
-- go. Calls within the window of each other make one unique call, the first heard of, and
-- their target calls one target call: a late retry, a replay from the spool or a CDR import
-- may bring an earlier call after a later one. A missed or short call does not keep the call
-- that got through from being a target call: only an earlier target call does.
local function first(history)
  local seen = redis.call('ZCOUNT', history, start - window, start + window) == 0
  redis.call('ZADD', history, start, ARGV[1])
  redis.call('PEXPIRE', history, window)
  return seen
end
local why_not = ARGV[10] ~= '' and ARGV[10]
if ours and ARGV[3] ~= '' and window > 0 then
  unique = first(ARGV[8] .. 'caller:' .. ARGV[3])
  if target and not first(ARGV[8] .. 'target:' .. ARGV[3]) then target, why_not = false, 'repeat' end
end
-- Added to the record's text, not decoded and encoded again: cjson makes an empty list (a
-- visit with no page before the call) an object.
local encoded = string.sub(ARGV[2], 1, -2) .. ',"unique":' .. tostring(unique) .. ',"qualified":' ..
  tostring(target) .. ',"not_target":' .. (why_not and ('"' .. why_not .. '"') or 'null') .. '}'
redis.call('HSET', KEYS[1], ARGV[1], encoded)
return {encoded, 0}
