-- Count a visit or a conversion in a day's counters by dimension (service.analytics.dimensions):
-- each dimension alone and each pair of them, so a report by one or two dimensions reads one
-- hash a day. `prefix` is "sw:{SITE:log}:dims:DAY:"; `names` the dimensions in their fixed
-- order and `values` the visit's (`listed`); `field` is "v" for a visit, "c|KIND" for a
-- conversion, "u|KIND" for a visit's first conversion of a kind. A counter names each value by
-- the number it goes by that day (`…ids:DIM`), not by its text: a phrase new to the day is kept
-- once, not in its dimension's counters and its eight pairs'. Each dimension counts at most
-- `most` values a day, then '(other)', number 0; every key lives `ttl` seconds. A visit (given
-- its `visitor`, 8 bytes) is also a record of the day's table of visits (`…visits`): each
-- value's number, 2 bytes each, then the visitor (service.analytics.distinct counts visitors there).

-- The number a value goes by that day: its place among the day's values of the dimension
-- (`ids`: value -> number, 1 on) while there is room for one more, else 0, '(other)'.
-- Made-up phrases or pages cannot grow the counts without bound. If the day's numbers were lost
-- (deleted, evicted) while its counters were not, numbering anew would count new values under
-- old ones' numbers: the rest of the day's values are '(other)'.
local function numbered(ids, value, most, ttl, counters)
  local id = redis.call('HGET', ids, value)
  if id then return tonumber(id) end
  local count = redis.call('HLEN', ids)
  if count >= tonumber(most) or (count == 0 and redis.call('EXISTS', counters) == 1) then return 0 end
  redis.call('HSET', ids, value, count + 1)
  if count == 0 then redis.call('EXPIRE', ids, ttl) end
  return count + 1
end

-- Add 1 to a counter. Its hash gets its lifetime with its first field: a new hash (the day's
-- first, or one evicted or deleted meanwhile) has only new fields, and most counts are not.
local function counted(key, field, ttl)
  if redis.call('HINCRBY', key, field, 1) == 1 then redis.call('EXPIRE', key, ttl, 'NX') end
end

local function by_dimensions(prefix, names, values, field, most, ttl, visitor)
  local ids, record, counters = {}, {}, prefix .. 'counts:'
  for i = 1, #names do
    ids[i] = numbered(prefix .. 'ids:' .. names[i], values[i], most, ttl, counters .. names[i])
    if visitor then record[i] = string.char(math.floor(ids[i] / 256), ids[i] % 256) end  -- a conversion adds no record
  end
  if visitor then
    local table_of_visits, added = prefix .. 'visits', table.concat(record) .. visitor
    if redis.call('APPEND', table_of_visits, added) == #added then redis.call('EXPIRE', table_of_visits, ttl) end
  end
  for i = 1, #names do
    counted(counters .. names[i], field .. '|' .. ids[i], ttl)
    for j = i + 1, #names do
      counted(counters .. names[i] .. ',' .. names[j], field .. '|' .. ids[i] .. '|' .. ids[j], ttl)
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
