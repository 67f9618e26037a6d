local now, out = ARGV[2], {}
local paused = {}
for _, queue in ipairs(redis.call('SMEMBERS', PAUSED)) do paused[queue] = true end
local function row(queue, c)
    out[#out + 1] = queue
    for i = 1, 6 do out[#out + 1] = c[i] end
    out[#out + 1] = paused[queue] and 1 or 0
end
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
    local c = counts(queue, now)
    if c[1] + c[2] + c[3] + c[4] == 0 then
        forget_if_empty(queue)
    else
        row(queue, c)
        paused[queue] = nil
    end
end
-- Paused queues are listed even without tasks.
for queue in pairs(paused) do row(queue, counts(queue, now)) end
return out
