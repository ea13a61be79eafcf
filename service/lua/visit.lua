-- Add a page view to a visit's journey, and keep the visit's record when it starts there.
-- Both keys carry the visitor's hash tag {site|visitor}, so one visitor's keys share a slot.
-- Both live for the retention from the visit's start: a visit's pages come minutes apart,
-- so its later page views only append.
-- KEYS: 1 pages  list    "ms path" of its page views, the latest ARGV[2]
--       2 visit  string  the visit's record as it started (json); only where it starts
-- ARGV: 1 the page view  2 most pages  3 lifetime, seconds  4 the record, with KEYS[2]
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4], 'NX', 'EX', ARGV[3]) end
local pages = redis.call('RPUSH', KEYS[1], ARGV[1])
if pages == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
elseif pages > tonumber(ARGV[2]) then
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
end
return pages
