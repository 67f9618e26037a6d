local queues = ARGV[2] ~= '' and {ARGV[2]} or redis.call('SMEMBERS', QUEUES)
local out = {}
for _, queue in ipairs(queues) do
    for _, id in ipairs(redis.call('ZRANGE', q_key(queue, 'failed'), 0, -1)) do
        append_row(out, id, SUMMARY_FIELDS)
    end
end
return out
