local now, out = ARGV[2], {}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
    local c = counts(queue, now)
    if c[1] + c[2] + c[3] + c[4] == 0 then
        forget_if_empty(queue)
    else
        out[#out + 1] = queue
        for i = 1, 6 do out[#out + 1] = c[i] end
    end
end
return out
