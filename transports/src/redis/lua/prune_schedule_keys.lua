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
return removed
