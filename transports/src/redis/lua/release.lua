local id, token, now, reason_json = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t = leased(id, token)
if not t then return 0 end
local k = task_key(id)
unindex_running(id, t)
record(id, t, 'released', reason_json, now)
redis.call('HINCRBY', k, 'attempts', -1)
redis.call('HSET', k, 'state', 'pending', 'run_at', now)
index_pending(t.queue, id, now, now, t.created_at)
return 1
