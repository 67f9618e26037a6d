local queue, which = ARGV[2], ARGV[3]
local index = q_key(queue, which)
local ids = redis.call('ZRANGE', index, 0, -1)
for _, id in ipairs(ids) do redis.call('DEL', task_key(id)) end
redis.call('DEL', index)
if which == 'pending' then
    redis.call('DEL', q_key(queue, 'ready'), q_key(queue, 'delayed'))
end
forget_if_empty(queue)
return #ids
