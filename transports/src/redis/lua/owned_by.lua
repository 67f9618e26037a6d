local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. ':owner:' .. ARGV[2])) do
    append_row(out, id, TASK_FIELDS)
end
return out
