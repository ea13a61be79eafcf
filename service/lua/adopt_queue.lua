-- Give the endpoints that now have ids the queue their url had (service.integrations.webhook_queues):
-- giving an endpoint an id loses none of what it had not delivered.
-- KEYS: 1 the site's conversion log (a stream)
-- ARGV: 1 the url's consumer group  2 the consumer the copied entries go to  3… the id's new groups
-- Each new group starts where the url's group is in the log and holds every entry that group
-- read and has not acknowledged, with its retry count and idle time; then the url's group goes.
-- A group that exists already is left as it is. Returns how many groups were made.
local log, source, consumer = KEYS[1], ARGV[1], ARGV[2]
local from
for _, group in ipairs(redis.call('XINFO', 'GROUPS', log)) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == source then from = info end
end
if not from then return 0 end
local made = 0
for i = 3, #ARGV do
  local create = {'XGROUP', 'CREATE', log, ARGV[i], from['last-delivered-id']}
  if from['entries-read'] then
    table.insert(create, 'ENTRIESREAD')
    table.insert(create, from['entries-read'])
  end
  local created = redis.pcall(unpack(create))
  if not (type(created) == 'table' and created.err) then
    made = made + 1
    local start = '-'
    repeat
      local page = redis.call('XPENDING', log, source, start, '+', 100)
      for _, entry in ipairs(page) do
        redis.call('XCLAIM', log, ARGV[i], consumer, 0, entry[1], 'IDLE', entry[3], 'RETRYCOUNT', entry[4],
                   'FORCE', 'JUSTID')
        start = '(' .. entry[1]
      end
    until #page < 100
  end
end
redis.call('XGROUP', 'DESTROY', log, source)
return made
