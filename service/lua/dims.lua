-- Count a visit or a conversion in a day's counters by dimension (service.analytics.dimensions):
-- each dimension alone and each pair of them, so a report by one or two dimensions reads one
-- hash a day. `prefix` is "sw:{SITE:log}:dims:DAY:"; `names` the dimensions in their fixed
-- order and `values` the visit's (`listed`); `field` is "v" for a visit, "c|KIND" for a
-- conversion, "u|KIND" for a visit's first conversion of a kind. Each dimension counts at
-- most `most` values a day, then '(other)'; every key lives `ttl` seconds. A visit (given its
-- `visitor`, 8 bytes) is also a record of the day's table of visits (`…visits`): each value's
-- number, 2 bytes each, then the visitor (service.analytics.distinct counts visitors there).

-- A value and the number it goes by in the day's table: its place among the day's values of
-- the dimension (`ids`: value -> number, 1 on) while there is room for one more, else
-- '(other)', 0. Made-up phrases or pages cannot grow the counts without bound.
local function numbered(ids, value, most, ttl)
  local id = redis.call('HGET', ids, value)
  if id then return value, tonumber(id) end
  local count = redis.call('HLEN', ids)
  if count >= tonumber(most) then return '(other)', 0 end
  redis.call('HSET', ids, value, count + 1)
  redis.call('EXPIRE', ids, ttl)
  return value, count + 1
end

local function by_dimensions(prefix, names, values, field, most, ttl, visitor)
  local kept, record = {}, {}
  for i = 1, #names do
    local id
    kept[i], id = numbered(prefix .. 'ids:' .. names[i], values[i], most, ttl)
    if visitor then record[i] = string.char(math.floor(id / 256), id % 256) end  -- a conversion adds no record
  end
  if visitor then
    local table_of_visits = prefix .. 'visits'
    redis.call('APPEND', table_of_visits, table.concat(record) .. visitor)
    redis.call('EXPIRE', table_of_visits, ttl, 'NX')
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
