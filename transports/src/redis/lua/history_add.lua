local oldest, ttl = ARGV[2], ARGV[3]
local index = P .. ':history'
local i = 4
while i <= #ARGV do
    local minute, queue, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local member = minute .. ':' .. queue
    local key = P .. ':history:' .. member
    for j = 0, n - 1 do
        redis.call('HINCRBY', key, ARGV[i + 3 + 2 * j], ARGV[i + 4 + 2 * j])
    end
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', index, minute, member)
    i = i + 3 + 2 * n
end
-- The rows themselves expire by themselves (EXPIRE); their index entries go here.
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. oldest)
return 1
