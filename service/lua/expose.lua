-- Count a visitor once per experiment, in the cohort of their first exposure.
-- KEYS: 1 assign   hash  visitor id -> "variant|page|day" of the first exposure
--       2 exposed  hash  "day|page|variant" -> visitors first exposed then
-- ARGV: 1 visitor id  2 variant  3 page  4 day
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[4] .. '|' .. ARGV[3] .. '|' .. ARGV[2], 1)
  return 1
end
return 0
