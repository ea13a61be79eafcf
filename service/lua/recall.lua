-- The caller's latest call to this number before this one, within the window, if it was
-- credited to a visitor: a customer who calls the number back from their phone's list of calls
-- after the hold that showed it to them ended, or once another visitor holds it.
-- KEYS: 1 calls  hash  call id -> record json (call.lua)
--       2 the caller's calls  zset  call id -> start ms (call.lua)
-- ARGV: 1 the number called  2 this call's start ms  3 window ms
-- Returns that call's record (json), or false. Looks at the caller's latest 20 calls at most.
local start = tonumber(ARGV[2])
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. start, start - tonumber(ARGV[3]), 'LIMIT', 0, 20)
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[1], id)
  if record then
    local call = cjson.decode(record)
    if call.number == ARGV[1] and call.kind == 'lease' and type(call.visitor) == 'string' and call.visitor ~= '' then
      return record
    end
  end
end
return false
