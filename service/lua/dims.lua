-- Count a visit or a conversion in a day's counters by dimension (service.analytics.dimensions):
-- each dimension alone and each pair of them, so a report by one or two dimensions reads one
-- hash a day. `prefix` is "sw:{SITE:log}:dims:DAY:"; `names` the dimensions in their fixed
-- order and `values` the visit's, escaped of '|'; `field` is "v" for a visit, "c|KIND" for a
-- conversion, "u|KIND" for a visit's first conversion of a kind. Each dimension counts at
-- most `most` values a day, then '(other)' (capped.lua); every key lives `ttl` seconds.
local function by_dimensions(prefix, names, values, field, most, ttl)
  local kept = {}
  for i = 1, #names do
    kept[i] = capped(prefix .. 'values:' .. names[i], values[i], most, ttl)
  end
  for i = 1, #names do
    local single = prefix .. names[i]
    redis.call('HINCRBY', single, field .. '|' .. kept[i], 1)
    redis.call('EXPIRE', single, ttl, 'NX')
    for j = i + 1, #names do
      local pair = prefix .. names[i] .. ',' .. names[j]
      redis.call('HINCRBY', pair, field .. '|' .. kept[i] .. '|' .. kept[j], 1)
      redis.call('EXPIRE', pair, ttl, 'NX')
    end
  end
end

-- The dimensions' names, then their values, from ARGV[first] on, as the callers pass them.
local function dimensions_from(first)
  local n = (#ARGV - first + 1) / 2
  local names, values = {}, {}
  for i = 1, n do
    names[i] = ARGV[first - 1 + i]
    values[i] = ARGV[first - 1 + n + i]
  end
  return names, values
end
