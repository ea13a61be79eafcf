-- Keep a visit as it started, and add a page view to its journey. Both keys carry the
-- visitor's hash tag {site|visitor}, so one visitor's keys share a slot.
-- KEYS: 1 visit  string  the visit's record as it started (json)
--       2 pages  list    "ms path" of its page views, the latest ARGV[3]
-- ARGV: 1 the record, '' for a visit that goes on  2 the page view  3 most pages  4 lifetime, seconds
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[4])
else
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
