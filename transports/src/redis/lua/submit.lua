local queue, payload, run_at, now, has_key, key = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if has_key == '1' and redis.call('ZADD', P .. ':keys', 'NX', 0, key) == 0 then return false end
-- Operators' run-now keys are also indexed by time, for prune_schedule_keys.
if has_key == '1' and string.sub(key, 1, 7) == 'manual:' then
    redis.call('ZADD', P .. ':manual_keys', now, key)
end
return enqueue(queue, payload, run_at, now)
