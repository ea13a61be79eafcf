-- Count a visit as it starts, by its dimensions (dims.lua).
-- KEYS: 1 the day's hash of the first dimension (its slot is every dimension key's: {SITE:log})
-- ARGV: 1 key prefix  2 most values a day  3 lifetime, seconds  4.. the dimensions' names, then their values
local names, values = dimensions_from(4)
by_dimensions(ARGV[1], names, values, 'v', ARGV[2], ARGV[3])
return 1
