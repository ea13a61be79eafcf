-- Admit a conversion under its page view's cap (capped.lua): at most ARGV[2] event ids of its
-- type a page view; a retry of one of them is admitted again (convert.lua knows it for one).
-- KEYS: 1 the page view's set of the type's event ids. ARGV: 1 event id 2 most 3 lifetime, seconds.
-- Returns 1 if admitted, else 0.
return capped(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) == ARGV[1] and 1 or 0
