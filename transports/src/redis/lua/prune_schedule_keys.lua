local set = P .. ':keys'
local cutoff = ARGV[2]
local keys = redis.call('ZRANGEBYLEX', set, '[schedule:', '(schedule;')
local removed = 0
for i = 1, #keys - 1 do
    local key, later = keys[i], keys[i + 1]
    if string.sub(later, 1, -17) == string.sub(key, 1, -17) and string.sub(key, -16) < cutoff then
        redis.call('ZREM', set, key)
        removed = removed + 1
    end
end
-- Operators' run-now keys used before the cutoff.
local manual = redis.call('ZRANGEBYSCORE', P .. ':manual_keys', '-inf', '(' .. string.format('%d', tonumber(cutoff)))
for _, key in ipairs(manual) do
    redis.call('ZREM', set, key)
    redis.call('ZREM', P .. ':manual_keys', key)
end
return removed + #manual
