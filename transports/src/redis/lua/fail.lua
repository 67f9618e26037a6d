local id, token, now, outcome, reason, reason_json, retry_at =
    ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local t = leased(id, token)
if not t then return 0 end
local k = task_key(id)
unindex_running(id, t)
record(id, t, outcome, reason_json, now)
redis.call('HINCRBY', k, outcome == 'crash' and 'crashes' or 'errors', 1)
redis.call('HSET', k, 'last_error', reason)
if retry_at ~= '' then
    redis.call('HSET', k, 'state', 'pending', 'run_at', retry_at)
    index_pending(t.queue, id, retry_at, now, t.created_at)
else
    redis.call('HSET', k, 'state', 'failed')
    redis.call('ZADD', q_key(t.queue, 'failed'), id, id)
end
return 1
