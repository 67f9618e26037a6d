local since, queue = ARGV[2], ARGV[3]
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. ':history', since, '+inf')) do
    local minute, q = string.match(member, '^(%-?%d+):(.+)$')
    if minute and (queue == '' or q == queue) then
        local fields = redis.call('HGETALL', P .. ':history:' .. member)
        if #fields > 0 then
            out[#out + 1] = q
            out[#out + 1] = minute
            out[#out + 1] = tostring(#fields / 2)
            for _, v in ipairs(fields) do out[#out + 1] = v end
        end
    end
end
return out
