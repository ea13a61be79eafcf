-- Count a visit as it starts, by its dimensions, and add it to the day's table of visits (dims.lua).
-- KEYS: 1 the day's hash of the first dimension (its slot is every dimension key's: {SITE:log})
-- ARGV: 1 key prefix  2 most values a day  3 lifetime, seconds  4 the dimensions' names  5 the visit's values
--       6 the visitor: 8 bytes of a hash of their id (service.tracking.counters.visitor_hash)
if #ARGV[6] ~= 8 then return redis.error_reply('the visitor must be 8 bytes: the table\'s records are') end
by_dimensions(ARGV[1], listed(ARGV[4]), listed(ARGV[5]), 'v', ARGV[2], ARGV[3], ARGV[6])
return 1
