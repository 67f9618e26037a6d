local queue, now = ARGV[2], ARGV[3]
local delayed = q_key(queue, 'delayed')
if redis.call('ZCARD', q_key(queue, 'ready')) > 0
    or redis.call('ZCOUNT', delayed, '-inf', now) > 0 then
    return {1}
end
redis.call('DEL', q_key(queue, 'signal'))
local next_run = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {0, next_run[2] or false}
