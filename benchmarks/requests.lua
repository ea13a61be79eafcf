-- wrk script: replay a file of requests in a loop, print the results as one JSON line.
--
--   wrk -t1 -c32 -d10s -s benchmarks/requests.lua http://127.0.0.1:8000 -- FILE RUN [PACE]
--
-- FILE has one request per line, tab-separated: METHOD, PATH, X-Forwarded-For, User-Agent
-- and an optional body. "{ID}" in a body becomes a fresh id per request (RUN .. counter),
-- so every conversion beacon counts as a new event; in a path "zzVIDzz" becomes a fresh
-- visitor id, and "zzWORDzz" a made-up Russian word of four syllables, never the same twice
-- in a run (as a search phrase's word, encoded twice: in the page's URL, in the query).
-- benchmarks/harness.py writes the files. PACE, in milliseconds: each connection waits a random
-- time of that mean (exponential: arrivals as a crowd's are) before each request, so that a
-- given rate of requests, not as many as the server can answer, arrives (benchmarks/latency.py).

local requests = {}
local formatted = {}
local counter = 0
local run = "r"
local seed = 0
local syllables = {}
for _, consonant in ipairs({"б", "в", "г", "д", "з", "к", "л", "м", "н", "п", "р", "с", "т"}) do
  for _, vowel in ipairs({"а", "е", "и", "о", "у"}) do
    table.insert(syllables, consonant .. vowel)
  end
end

local function made_up_word(n)
  local word = ""
  for _ = 1, 4 do
    word = word .. syllables[n % #syllables + 1]
    n = math.floor(n / #syllables)
  end
  return (word:gsub("[\128-\255]", function(byte) return string.format("%%25%02X", byte:byte()) end))
end

function init(args)
  local file = args[1]
  run = (args[2] or run):gsub("[^%w_-]", "")
  for i = 1, #run do
    seed = (seed * 31 + run:byte(i)) % 17850625  -- #syllables ^ 4: each run its own words
  end
  for line in io.lines(file) do
    local method, path, xff, ua, body = line:match("^(%u+)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t?(.*)$")
    if method then
      -- What a browser's fetch from the site's page sends besides (service/visitors.py, from_browser).
      local headers = {["X-Forwarded-For"] = xff, ["User-Agent"] = ua, ["Origin"] = "https://load.example",
                       ["Sec-Fetch-Mode"] = "cors"}
      if body == "" then
        body = nil
      else
        headers["Content-Type"] = "text/plain;charset=UTF-8"
      end
      local entry = {method = method, path = path, headers = headers, body = body}
      table.insert(requests, entry)
      -- Requests without a per-request id are formatted once: replaying them costs wrk nothing.
      if (body == nil or not body:find("{ID}", 1, true)) and not path:find("zz%u+zz") then
        formatted[#requests] = wrk.format(method, path, headers, body)
      end
    end
  end
  local pace = tonumber(args[3] or "") or 0
  if pace > 0 then  -- wrk paces requests only where the script has a delay()
    function delay()
      return -math.log(1 - math.random()) * pace
    end
  end
  -- Threads start at different places in the file.
  counter = (tonumber(id) or 0) * 7919
end

function setup(thread)
  thread:set("id", tostring(math.random(0, 1000)))
end

function request()
  counter = counter + 1
  local index = (counter - 1) % #requests + 1
  local ready = formatted[index]
  if ready then
    return ready
  end
  local entry = requests[index]
  local fresh = run .. "-" .. tostring(id) .. "-" .. counter
  local body = entry.body and entry.body:gsub("{ID}", fresh)
  local path = entry.path:gsub("zzVIDzz", string.format("n%s%s%012d", run, tostring(id), counter))
  path = path:gsub("zzWORDzz", function() return made_up_word(seed + (tonumber(id) or 0) * 7919 + counter) end)
  return wrk.format(entry.method, path, entry.headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "mean_us": %.1f, "p50_us": %d, ' ..
    '"p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
