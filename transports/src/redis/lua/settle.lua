deferred_wakes = {}
local applied = settle(3, ARGV[2])
flush_wakes()
return applied
