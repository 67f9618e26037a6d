local lease_until, n = ARGV[2], 0
for i = 3, #ARGV do
    for _, id in ipairs(redis.call('SMEMBERS', P .. ':owner:' .. ARGV[i])) do
        redis.call('HSET', task_key(id), 'lease_until', lease_until)
        redis.call('ZADD', RUNNING, lease_until, id)
        n = n + 1
    end
end
return n
