-- The ledger's counts of a cohort day go to the day and to each span of 4, 16 and 64 days that
-- holds it (service.tracking.ledger), so a report over any days reads a few spans, not every
-- day. Each span costs every count one more HINCRBY: four lengths are the trade. A span is the hash PREFIX..'days:FIRST:LENGTH', FIRST the number of its first
-- day (days since 1970-01-01). It lives `keep` seconds from its first count, which comes on its
-- first day or later, so it outlives the window in which reports read it (Ledger.window). Its
-- fields are 'MEASURE|PAGE|TAIL', TAIL the variant or 'VARIANT|KIND'; a day's own hash also
-- counts the measure over all its pages, under the page '*', for the reports' daily series.
local function day_number(iso)  -- days since 1970-01-01 of a YYYY-MM-DD day (Howard Hinnant's days_from_civil)
  local y, m, d = tonumber(string.sub(iso, 1, 4)), tonumber(string.sub(iso, 6, 7)), tonumber(string.sub(iso, 9, 10))
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local year = y - era * 400
  local day = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + year * 365 + math.floor(year / 4) - math.floor(year / 100) + day - 719468
end

local function count(prefix, keep, day, measure, page, tail, n)
  local number, length = day_number(day), 1
  while length <= 64 do
    local first = number - number % length
    local span = prefix .. 'days:' .. first .. ':' .. length
    if redis.call('HINCRBY', span, measure .. '|' .. page .. '|' .. tail, n) == n then
      redis.call('EXPIRE', span, keep, 'NX')  -- a new field: the span may be new too
    end
    if length == 1 then redis.call('HINCRBY', span, measure .. '|*|' .. tail, n) end
    length = length * 4
  end
end
