local run_at, now = ARGV[2], ARGV[3]
local n = (#ARGV - 3) / 2
if n == 0 then return {} end
-- The ids n one-at-a-time submits would get.
local last = redis.call('INCRBY', P .. ':ids', n)
local ready_now = tonumber(run_at) <= tonumber(now)
deferred_wakes = {}
-- Ready tasks are indexed per queue at the end, in one ZADD per set: {pending, ready} members.
local ready_by_queue = {}
local ids = {}
for i = 1, n do
    local queue, payload = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
    local id = string.format('%d', last - n + i)
    ids[i] = id
    new_task(id, queue, payload, run_at, now)
    if ready_now then
        local q = ready_by_queue[queue]
        if not q then
            q = {{}, {}}
            ready_by_queue[queue] = q
        end
        local pending, ready = q[1], q[2]
        pending[#pending + 1], pending[#pending + 2] = now, id
        ready[#ready + 1], ready[#ready + 2] = run_at, ready_member(id)
    else
        -- Delayed: one at a time, so that each may wake waiters as a submit would.
        redis.call('SADD', QUEUES, queue)
        index_pending(queue, id, run_at, now, now)
    end
end
for queue, q in pairs(ready_by_queue) do
    redis.call('SADD', QUEUES, queue)
    call_many('ZADD', q_key(queue, 'pending'), q[1])
    call_many('ZADD', q_key(queue, 'ready'), q[2])
    deferred_wakes[queue] = (deferred_wakes[queue] or 0) + #q[2] / 2
end
flush_wakes()
return ids
