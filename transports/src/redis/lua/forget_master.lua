redis.call('DEL', P .. ':master:' .. ARGV[2])
redis.call('ZREM', P .. ':masters', ARGV[2])
return 1
