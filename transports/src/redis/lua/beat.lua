local id, record, expires_at, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local index = P .. ':masters'
-- Records that expired are forgotten by the server (PX); their index entries here.
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local ttl = tonumber(expires_at) - tonumber(now)
if ttl <= 0 then
    redis.call('DEL', P .. ':master:' .. id)
    redis.call('ZREM', index, id)
    return 0
end
redis.call('SET', P .. ':master:' .. id, record, 'PX', string.format('%d', ttl))
redis.call('ZADD', index, expires_at, id)
return 1
