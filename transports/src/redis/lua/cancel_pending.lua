local id, reason, reason_json, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local k = task_key(id)
local f = redis.call('HMGET', k, 'state', 'queue', 'attempts')
if f[1] ~= 'pending' then return 0 end
local queue = f[2]
redis.call('ZREM', q_key(queue, 'pending'), id)
-- Ready entries of older versions are the plain id.
redis.call('ZREM', q_key(queue, 'ready'), ready_member(id), id)
redis.call('ZREM', q_key(queue, 'delayed'), id)
record(id, {attempts = f[3], owner = ''}, 'cancelled', reason_json, now)
redis.call('HSET', k, 'state', 'failed', 'run_at', now, 'last_error', reason)
redis.call('ZADD', q_key(queue, 'failed'), id, id)
return 1
