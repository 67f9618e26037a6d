local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', RUNNING, '-inf', '(' .. ARGV[2])) do
    append_row(out, id, TASK_FIELDS)
end
return out
