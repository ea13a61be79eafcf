-- Add a page view to a visit's journey, and keep the visit's record when it starts there.
-- Both keys carry the visitor's hash tag {site|visitor}, so one visitor's keys share a slot.
-- Both live for the retention from the visit's start: a visit's pages come minutes apart,
-- so its later page views only append.
-- KEYS: 1 pages  list    "ms path" of its page views, the latest `most`
--       2 visit  string  the visit's record as it started (json); only where it starts
-- ARGV: 1 one JSON array: the page view ("ms path"), most pages, lifetime in seconds
--       2 the record, with KEYS[2]
local page, most, lifetime = unpack(cjson.decode(ARGV[1]))
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', lifetime) end
local pages = redis.call('RPUSH', KEYS[1], page)
if pages == 1 then
  redis.call('EXPIRE', KEYS[1], lifetime)
elseif pages > most then
  redis.call('LTRIM', KEYS[1], -most, -1)
end
return pages
