local queue, now = ARGV[2], ARGV[3]
-- Paused: nothing is ready for its waiters until it is resumed (which pushes tokens).
if redis.call('SISMEMBER', PAUSED, queue) == 1 then
    redis.call('DEL', q_key(queue, 'signal'))
    return {2}
end
local delayed = q_key(queue, 'delayed')
if redis.call('ZCARD', q_key(queue, 'ready')) > 0
    or redis.call('ZCOUNT', delayed, '-inf', now) > 0 then
    return {1}
end
redis.call('DEL', q_key(queue, 'signal'))
local next_run = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {0, next_run[2] or false}
