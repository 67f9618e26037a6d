local n, queues = 0, {}
for i = 2, #ARGV do
    local id = ARGV[i]
    local f = redis.call('HMGET', task_key(id), 'state', 'queue')
    if f[1] == 'failed' then
        redis.call('ZREM', q_key(f[2], 'failed'), id)
        redis.call('DEL', task_key(id))
        queues[f[2]] = true
        n = n + 1
    end
end
for queue in pairs(queues) do forget_if_empty(queue) end
return n
