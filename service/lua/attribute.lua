-- Who held number N at time T: the last lease that started at or before T, if it had not
-- ended by T; else, when T is given to the second (ARGV 2 = 999), a lease that started within
-- that second: a call the moment the number showed may be stamped before its lease began.
-- A lease id names a lease of N only if its record says so: a store that lost the pool's
-- sequence (evicted, restored from an old copy) hands out ids again, another number's leases.
-- KEYS: 1 leases  2 history of N   ARGV: 1 T ms  2 ms after T the call may have started  3 N
-- Returns the lease record (json) or false.
local at = tonumber(ARGV[1])
local function of_n(ids)
  local record = #ids > 0 and redis.call('HGET', KEYS[1], ids[1])
  return record and cjson.decode(record).n == ARGV[3] and record
end
local record = of_n(redis.call('ZREVRANGEBYSCORE', KEYS[2], at, '-inf', 'LIMIT', 0, 1))
if record and cjson.decode(record).u >= at then return record end
return of_n(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. at, at + tonumber(ARGV[2]), 'LIMIT', 0, 1)) or false
