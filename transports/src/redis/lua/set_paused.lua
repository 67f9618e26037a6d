local queue, pause, now = ARGV[2], ARGV[3], ARGV[4]
if pause == '1' then return redis.call('SADD', PAUSED, queue) end
if redis.call('SREM', PAUSED, queue) == 0 then return 0 end
-- Resumed: wake its waiters as the submits of its ready tasks would have (one token each; at
-- least one, so that a waiter also learns of its earliest delayed task).
local ready = redis.call('ZCARD', q_key(queue, 'ready'))
    + redis.call('ZCOUNT', q_key(queue, 'delayed'), '-inf', now)
deferred_wakes = {[queue] = math.max(ready, 1)}
flush_wakes()
return 1
