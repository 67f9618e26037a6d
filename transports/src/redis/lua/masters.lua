local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':masters', '(' .. ARGV[2], '+inf')) do
    local record = redis.call('GET', P .. ':master:' .. id)
    if record then out[#out + 1] = record end
end
return out
