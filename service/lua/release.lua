-- A pool's holds as lease.lua keeps them, read and given back alike by every script that
-- leases, renews, ends or reclaims one. KEYS: lease.lua's (1 numbers, 2 free, 3 held, 4 holder,
-- 5 visitor, 6 leases, 8 stats, 10 networks).

-- A lease's network holds one number fewer.
local function counted_out(lease)
  if lease.a and lease.a ~= '' and redis.call('HINCRBY', KEYS[10], lease.a, -1) <= 0 then
    redis.call('HDEL', KEYS[10], lease.a)
  end
end

-- Give a number back: its visitor loses it, and it is free since its hold ended.
local function release(number, ended)
  local id = redis.call('HGET', KEYS[4], number)
  local record = id and redis.call('HGET', KEYS[6], id)
  if record then
    local lease = cjson.decode(record)
    if redis.call('HGET', KEYS[5], lease.v) == number then redis.call('HDEL', KEYS[5], lease.v) end
    redis.call('HINCRBY', KEYS[8], 'held_ms', lease.u - lease.f)
    redis.call('HINCRBY', KEYS[8], 'released', 1)
    counted_out(lease)
  end
  redis.call('HDEL', KEYS[4], number)
  redis.call('ZREM', KEYS[3], number)
  if redis.call('SISMEMBER', KEYS[1], number) == 1 then redis.call('ZADD', KEYS[2], ended, number) end
end

-- Give back every number whose hold ended before `before` (ms), a bounded batch a call; how many.
local function reclaim(before)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. before, 'WITHSCORES', 'LIMIT', 0, 100)
  for i = 1, #expired, 2 do release(expired[i], tonumber(expired[i + 1])) end
  return #expired / 2
end

-- The last lease of `number` if it was `vid`'s and the number is free again in the pool: a page of
-- theirs still shows it, and they may have written it down, so it is theirs before anyone's
-- (their heartbeat takes it back, extend.lua, and so does their next page view, lease.lua).
-- False for a number the rules took out, one another visitor has, or one someone else held last.
local function theirs_last(number, vid, prefix)
  if not number or number == '' or redis.call('SISMEMBER', KEYS[1], number) == 0
      or not redis.call('ZSCORE', KEYS[2], number) then
    return false
  end
  local last = redis.call('ZREVRANGE', prefix .. 'history:' .. number, 0, 0)[1]
  local record = last and redis.call('HGET', KEYS[6], last)
  local lease = record and cjson.decode(record)
  return lease and lease.v == vid and lease
end

-- The number `vid` holds, its lease and the lease's id; or nothing. An entry whose lease is
-- gone or another's (a store that lost the record) goes: that number is not theirs to keep.
local function holding(vid)
  local number = redis.call('HGET', KEYS[5], vid)
  local id = number and redis.call('HGET', KEYS[4], number)
  local record = id and redis.call('HGET', KEYS[6], id)
  local lease = record and cjson.decode(record)
  if lease and lease.v == vid then return number, lease, id end
  if number then redis.call('HDEL', KEYS[5], vid) end
end
