local oldest, ttl, recording = ARGV[2], ARGV[3], ARGV[4]
-- A recording made already (its reply was lost, the master repeats it) adds nothing.
if not redis.call('SET', P .. ':history_recording:' .. recording, 1, 'NX', 'EX', ttl) then
    return 0
end
local index = P .. ':history'
local i = 5
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
