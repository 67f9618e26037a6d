local now, mode = ARGV[2], ARGV[3]
local function retry(id)
    local k = task_key(id)
    local f = redis.call('HMGET', k, 'state', 'queue', 'created_at')
    if f[1] ~= 'failed' then return 0 end
    redis.call('ZREM', q_key(f[2], 'failed'), id)
    redis.call('HSET', k, 'state', 'pending', 'run_at', now, 'attempts', '0', 'errors', '0',
        'crashes', '0')
    index_pending(f[2], id, now, now, f[3])
    return 1
end
local n = 0
if mode == 'ids' then
    for i = 4, #ARGV do n = n + retry(ARGV[i]) end
else
    local queues = mode == 'queue' and {ARGV[4]} or redis.call('SMEMBERS', QUEUES)
    for _, queue in ipairs(queues) do
        for _, id in ipairs(redis.call('ZRANGE', q_key(queue, 'failed'), 0, -1)) do
            n = n + retry(id)
        end
    end
end
return n
