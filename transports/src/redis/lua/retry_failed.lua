local now, mode = ARGV[2], ARGV[3]
-- The tasks moved, as id, queue, id, queue, ...
local moved = {}
local function retry(id)
    local k = task_key(id)
    local f = redis.call('HMGET', k, 'state', 'queue', 'created_at')
    if f[1] ~= 'failed' then return end
    redis.call('ZREM', q_key(f[2], 'failed'), id)
    redis.call('HSET', k, 'state', 'pending', 'run_at', now, 'attempts', '0', 'errors', '0',
        'crashes', '0')
    index_pending(f[2], id, now, now, f[3])
    moved[#moved + 1] = tostring(id)
    moved[#moved + 1] = f[2]
end
-- Cancel requests name (task, attempt), and a retry starts counting attempts again: the
-- requests of tasks not running (a retried one among them) go, so that its new attempts are
-- not taken for the cancelled one.
local function forget_cancels()
    local cancels = P .. ':cancel_requests'
    for _, m in ipairs(redis.call('ZRANGE', cancels, 0, -1)) do
        local id = string.match(m, '^(%d+):')
        if not id or redis.call('HGET', task_key(id), 'state') ~= 'running' then
            redis.call('ZREM', cancels, m)
        end
    end
end
if mode == 'ids' then
    for i = 4, #ARGV do retry(ARGV[i]) end
else
    local queues = mode == 'queue' and {ARGV[4]} or redis.call('SMEMBERS', QUEUES)
    for _, queue in ipairs(queues) do
        for _, id in ipairs(redis.call('ZRANGE', q_key(queue, 'failed'), 0, -1)) do
            retry(id)
        end
    end
end
if #moved > 0 then forget_cancels() end
return moved
