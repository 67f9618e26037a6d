-- Delete completed tasks of every queue: those completed before ARGV[2] (ms), and those
-- beyond the newest ARGV[3] of their queue; at most ARGV[4] in this call (the caller calls
-- again while a call deletes that many). Returns how many were deleted.
local before, keep, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local deleted = 0
for _, queue in ipairs(redis.call('SMEMBERS', DONE_QUEUES)) do
    if deleted >= budget then break end
    local key = q_key(queue, 'done')
    -- Oldest first: beyond the cap (by rank), then by age (by score).
    local over = redis.call('ZCARD', key) - keep
    local doomed = {}
    if over > 0 then
        doomed = redis.call('ZRANGE', key, 0, math.min(over, budget - deleted) - 1)
    end
    if #doomed < budget - deleted then
        local old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', before),
            'LIMIT', #doomed, budget - deleted - #doomed)
        for _, member in ipairs(old) do doomed[#doomed + 1] = member end
    end
    for _, member in ipairs(doomed) do
        local id = string.format('%d', tonumber(member))
        -- Retried or deleted meanwhile? Only a task still done goes.
        if redis.call('HGET', task_key(id), 'state') == 'done' then
            redis.call('DEL', task_key(id))
        end
    end
    call_many('ZREM', key, doomed)
    deleted = deleted + #doomed
    if redis.call('ZCARD', key) == 0 then redis.call('SREM', DONE_QUEUES, queue) end
end
return deleted
