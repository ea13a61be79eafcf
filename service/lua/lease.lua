-- Lease a tracking number of one pool to a visitor, atomically.
-- Every key shares the pool's hash tag {site:pool}; per-number history keys are built from
-- ARGV[3], which carries the same tag, so the script stays in one cluster slot.
--
-- KEYS: 1 numbers  set   the pool's configured numbers
--       2 free     zset  number -> ms since it is free (lowest = free the longest)
--       3 held     zset  number -> ms when its hold ends
--       4 holder   hash  number -> lease id
--       5 visitor  hash  visitor id -> number
--       6 leases   hash  lease id -> {"n","v","f","u","p","x","w","a"} (number, visitor, from, until, page,
--                        variants, visit id, network)
--       7 seq      string lease id counter
--       8 stats    hash  per-hour arrivals and overflows, per-day peaks, hold totals
--       9 clock    string the latest time any call of this pool has seen
--      10 networks hash  client network (keyed hash) -> numbers it holds now
--       and, built from ARGV[3]: each number's history, the day's overflowed (or capped) visitors, and
--       'waiting' (zset: visitor -> when the hold they did not get would end)
-- ARGV: 1 hold ms  2 retention ms  3 key prefix for per-number history and overflow sets
--       4 most numbers one network may hold at once  5 hour label (2026-11-22T14)
--       6 day label (2026-11-22) (1-6: the pool's own in the hour, packed once)
--       7 the call's own, one JSON array: visitor id, now ms, page, variants, visit id, the
--         client's network ('' unknown), the number their last page showed ('' none)
-- Returns {number, "kept" | "new"}, or {false, "overflow" | "capped" | "missing"}: the pool has
-- no free number, or the visitor's network holds its share of the pool already (a burst of
-- made-up visitor ids from one address cannot squat the pool), or the store has no numbers of it.
local vid, stamped, page, variants, visit, network, shown = unpack(cjson.decode(ARGV[7]))
local hold = tonumber(ARGV[1])
-- Processes stamp requests before they queue, so scripts can run out of time order. The
-- pool's clock never goes back: a late script must not lease a number "before" its last
-- holder's hold ended.
local now = math.max(stamped, tonumber(redis.call('GET', KEYS[9]) or '0'))
redis.call('SET', KEYS[9], now)
local hour, prefix, day = ARGV[5], ARGV[3], ARGV[6]

-- Lease `number` to this call's visit from now, and add the lease to the number's history,
-- by which a call is credited to whoever held the number then (attribute.lua).
local function start(number)
  local id = tostring(redis.call('INCR', KEYS[7]))
  local lease = {n = number, v = vid, f = now, u = now + hold, p = page, x = variants, w = visit, a = network}
  if network ~= '' then redis.call('HINCRBY', KEYS[10], network, 1) end
  redis.call('HSET', KEYS[6], id, cjson.encode(lease))
  redis.call('HSET', KEYS[4], number, id)
  redis.call('HSET', KEYS[5], vid, number)
  redis.call('ZADD', KEYS[3], lease.u, number)
  local history = prefix .. 'history:' .. number
  redis.call('ZADD', history, now, id)
  -- What is older than the retention goes.
  local old = redis.call('ZRANGEBYSCORE', history, '-inf', '(' .. (now - tonumber(ARGV[2])), 'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('HDEL', KEYS[6], unpack(old))
    redis.call('ZREM', history, unpack(old))
  end
end

reclaim(now)  -- holds that ended before now (release.lua)

-- A returning visitor keeps their number while the hold lives; the hold restarts from now.
local number, lease, id = holding(vid)
if number then
  if lease.u >= now then
    -- A number the rules took out of the pool (one that stopped working, or that another pool
    -- waits for: service/tracking/moves.py) stays until its hold ends, never renewed.
    if redis.call('SISMEMBER', KEYS[1], number) == 0 then return {number, 'kept'} end
    if lease.w == visit or lease.f == now then  -- the same visit, or one that held it no time
      if lease.w ~= visit then lease.p, lease.x, lease.w = page, variants, visit end
      lease.u = now + hold
      redis.call('HSET', KEYS[6], id, cjson.encode(lease))
      redis.call('ZADD', KEYS[3], lease.u, number)
      return {number, 'kept'}
    end
    -- A new visit: the number stays, under a lease of the new visit from now, so that a call
    -- from now on is credited to it and one before to the visit that ended. The pool's
    -- statistics see one hold.
    redis.call('HINCRBY', KEYS[8], 'held_ms', now - lease.f)
    lease.u = now
    redis.call('HSET', KEYS[6], id, cjson.encode(lease))
    counted_out(lease)
    start(number)
    return {number, 'kept'}
  end
  release(number, lease.u)  -- ended, but beyond this call's reclaim batch
end

-- Most numbers held at once today ('peak:'); or wanted at once ('wanted:'), when a visitor
-- overflows: those held, and one for each visitor left waiting whose hold would not have ended.
local function peak(field, count)
  if count > tonumber(redis.call('HGET', KEYS[8], field .. day) or '0') then
    redis.call('HSET', KEYS[8], field .. day, count)
  end
end

-- A visitor who overflowed arrived then: their next page views while they would have held
-- a number are no more arrivals. 'waiting' scores them by when that hold would end, negated
-- for one turned away by their network's share: no demand to size the pool for.
local waiting = prefix .. 'waiting'
local waited = math.abs(tonumber(redis.call('ZSCORE', waiting, vid) or '0')) >= now
if not waited then redis.call('HINCRBY', KEYS[8], 'arrivals:' .. hour, 1) end
-- The number their last page showed, if free and theirs last; else the one free the longest.
local pick = theirs_last(shown, vid, prefix) and {shown} or redis.call('ZRANGE', KEYS[2], 0, 0)
-- A network past its share is turned away while numbers are free ('capped', counted apart: more
-- numbers would not have helped them); with none free, its visitor overflows as anyone's does.
local capped = #pick > 0 and network ~= '' and
  tonumber(redis.call('HGET', KEYS[10], network) or '0') >= tonumber(ARGV[4])
if capped then pick = {} end
if #pick == 0 then
  -- No numbers at all: the store lost the pool (flushed, restarted without persistence, failed
  -- over to an empty node), which the service puts back; no overflow of a pool too small.
  if not capped and redis.call('EXISTS', KEYS[1]) == 0 then return {false, 'missing'} end
  local turned = capped and 'capped:' or 'overflowed:'
  if not waited then redis.call('HINCRBY', KEYS[8], (capped and 'capped:' or 'overflow:') .. hour, 1) end
  redis.call('SADD', prefix .. turned .. day, vid)
  redis.call('PEXPIRE', prefix .. turned .. day, tonumber(ARGV[2]))
  redis.call('ZADD', waiting, capped and -(now + hold) or now + hold, vid)
  redis.call('ZREMRANGEBYSCORE', waiting, '(' .. -now, '(' .. now)  -- holds over, of either sign
  redis.call('PEXPIRE', waiting, hold)
  if not capped then peak('wanted:', redis.call('ZCARD', KEYS[3]) + redis.call('ZCOUNT', waiting, now, '+inf')) end
  return {false, capped and 'capped' or 'overflow'}
end

number = pick[1]
redis.call('ZREM', KEYS[2], number)
start(number)
if waited then redis.call('ZREM', waiting, vid) end

peak('peak:', redis.call('ZCARD', KEYS[3]))
return {number, 'new'}
