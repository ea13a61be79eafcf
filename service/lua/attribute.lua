-- Who held number N at time T: the last lease that started at or before T, if it had not
-- ended by T. KEYS: 1 leases  2 history of N   ARGV: 1 T ms
-- Returns the lease record (json) or false.
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], '-inf', 'LIMIT', 0, 1)
if #ids == 0 then return false end
local record = redis.call('HGET', KEYS[1], ids[1])
if not record then return false end
if cjson.decode(record).u < tonumber(ARGV[1]) then return false end
return record
