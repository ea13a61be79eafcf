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
  if count == 0 then redis.call('EXPIRE', ids, ttl) end
  return value, count + 1
end

-- Add 1 to a counter. Its hash gets its lifetime with its first field: a new hash (the day's
-- first, or one evicted or deleted meanwhile) has only new fields, and most counts are not.
local function counted(key, field, ttl)
  if redis.call('HINCRBY', key, field, 1) == 1 then redis.call('EXPIRE', key, ttl, 'NX') end
end

local function by_dimensions(prefix, names, values, field, most, ttl, visitor)
  local kept, record = {}, {}
  for i = 1, #names do
    local id
    kept[i], id = numbered(prefix .. 'ids:' .. names[i], values[i], most, ttl)
    if visitor then record[i] = string.char(math.floor(id / 256), id % 256) end  -- a conversion adds no record
  end
  if visitor then
    local table_of_visits, added = prefix .. 'visits', table.concat(record) .. visitor
    if redis.call('APPEND', table_of_visits, added) == #added then redis.call('EXPIRE', table_of_visits, ttl) end
  end
  for i = 1, #names do
    counted(prefix .. names[i], field .. '|' .. kept[i], ttl)
    for j = i + 1, #names do
      counted(prefix .. names[i] .. ',' .. names[j], field .. '|' .. kept[i] .. '|' .. kept[j], ttl)
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
