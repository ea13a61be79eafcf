-- Count a visit or a conversion in a day's counters by dimension (service.analytics.dimensions):
-- each dimension alone and each pair of them, so a report by one or two dimensions reads one
-- hash a day. `prefix` is "sw:{SITE:log}:dims:DAY:"; `names` the dimensions in their fixed
-- order and `values` the visit's (`listed`); `field` is "v" for a visit, "c|KIND" for a
-- conversion, "u|KIND" for a visit's first conversion of a kind. Each dimension counts at
-- most `most` values a day, then '(other)' (capped.lua); every key lives `ttl` seconds. A
-- visit's `visitor` joins the HyperLogLog of each of its values (`…visitors:NAME|VALUE`).
local function by_dimensions(prefix, names, values, field, most, ttl, visitor)
  local kept = {}
  for i = 1, #names do
    kept[i] = capped(prefix .. 'values:' .. names[i], values[i], most, ttl)
    if visitor then
      local seen = prefix .. 'visitors:' .. names[i] .. '|' .. kept[i]
      redis.call('PFADD', seen, visitor)
      redis.call('EXPIRE', seen, ttl, 'NX')
    end
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

-- The items of a list joined by '|', as the callers pass the dimensions' names and a visit's
-- values (escaped of '|'): one argument each.
local function listed(joined)
  local items = {}
  for item in string.gmatch(joined .. '|', '(.-)|') do items[#items + 1] = item end
  return items
end
