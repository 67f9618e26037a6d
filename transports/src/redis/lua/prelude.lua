local P = ARGV[1]
local RUNNING = P .. ':running'
local QUEUES = P .. ':queues'
local function task_key(id) return P .. ':task:' .. id end
local function q_key(queue, what) return P .. ':q:' .. queue .. ':' .. what end
local TASK_FIELDS = {'id', 'queue', 'payload', 'attempts', 'errors', 'crashes', 'lease_token',
    'owner', 'lease_until', 'created_at'}
local SUMMARY_FIELDS = {'id', 'queue', 'state', 'payload', 'attempts', 'errors', 'crashes',
    'last_error', 'history', 'created_at'}

-- Append the fields of a task to `out` (flat rows of `fields`).
local function append_row(out, id, fields)
    local values = redis.call('HMGET', task_key(id), unpack(fields))
    for i = 1, #fields do out[#out + 1] = values[i] end
end

-- Wake a waiter of `queue` (at most 256 tokens are kept: enough for every blocked waiter).
local function wake(queue)
    local signal = q_key(queue, 'signal')
    redis.call('RPUSH', signal, '1')
    redis.call('LTRIM', signal, -256, -1)
end

-- A ready-set member: the id zero-padded, so that among tasks due at the same millisecond
-- (equal scores, ordered by member) the lower id goes first. Members written before the
-- padding (plain ids, scored by id) still parse.
local function ready_member(id)
    return string.format('%020d', tonumber(id))
end

-- Index a pending task as ready (run_at <= now) or delayed. The ready set is scored by due
-- time: claims take the earliest due task, then the lowest id (the claim order of every
-- transport).
local function index_pending(queue, id, run_at, now, created_at)
    redis.call('ZADD', q_key(queue, 'pending'), created_at, id)
    if tonumber(run_at) <= tonumber(now) then
        redis.call('ZADD', q_key(queue, 'ready'), run_at, ready_member(id))
        wake(queue)
    else
        local delayed = q_key(queue, 'delayed')
        redis.call('ZADD', delayed, run_at, id)
        -- The new earliest delayed task: waiters must shorten their timeout.
        if redis.call('ZRANK', delayed, id) == 0 then wake(queue) end
    end
end

local function enqueue(queue, payload, run_at, now)
    local id = string.format('%d', redis.call('INCR', P .. ':ids'))
    redis.call('HSET', task_key(id), 'id', id, 'queue', queue, 'payload', payload,
        'state', 'pending', 'run_at', run_at, 'created_at', now, 'attempts', '0',
        'errors', '0', 'crashes', '0', 'lease_token', '0', 'history', '[]')
    redis.call('SADD', QUEUES, queue)
    index_pending(queue, id, run_at, now, now)
    return id
end

-- The task's state, queue, owner, attempts and created_at if `token` is its current lease.
local function leased(id, token)
    local f = redis.call('HMGET', task_key(id), 'state', 'lease_token', 'queue', 'owner',
        'attempts', 'created_at')
    if f[1] ~= 'running' or f[2] ~= token then return nil end
    return {queue = f[3], owner = f[4], attempts = f[5], created_at = f[6]}
end

local function unindex_running(id, t)
    redis.call('ZREM', RUNNING, id)
    redis.call('SREM', P .. ':owner:' .. t.owner, id)
    redis.call('SREM', q_key(t.queue, 'running'), id)
    redis.call('HDEL', task_key(id), 'owner', 'lease_until')
end

-- Append one attempt to the task's history; `reason_json` is a JSON string already.
local function record(id, t, outcome, reason_json, now)
    local k = task_key(id)
    local entry = '{"attempt":' .. t.attempts .. ',"owner":' .. cjson.encode(t.owner) ..
        ',"outcome":"' .. outcome .. '","reason":' .. reason_json .. ',"finished_at":' .. now .. '}'
    local history = redis.call('HGET', k, 'history')
    if history == '[]' then
        history = '[' .. entry .. ']'
    else
        history = string.sub(history, 1, -2) .. ',' .. entry .. ']'
    end
    redis.call('HSET', k, 'history', history)
end

-- ready, delayed, running, failed, earliest delayed run_at, oldest pending created_at.
local function counts(queue, now)
    local delayed = q_key(queue, 'delayed')
    local due = redis.call('ZCOUNT', delayed, '-inf', now)
    local later = redis.call('ZCARD', delayed) - due
    local next_run = redis.call('ZRANGEBYSCORE', delayed, '(' .. now, '+inf', 'WITHSCORES',
        'LIMIT', 0, 1)
    local oldest = redis.call('ZRANGE', q_key(queue, 'pending'), 0, 0, 'WITHSCORES')
    return {redis.call('ZCARD', q_key(queue, 'ready')) + due, later,
        redis.call('SCARD', q_key(queue, 'running')), redis.call('ZCARD', q_key(queue, 'failed')),
        next_run[2] or false, oldest[2] or false}
end

-- Drop a queue without tasks from the set of queues (its wake-up tokens are all stale).
local function forget_if_empty(queue)
    if redis.call('ZCARD', q_key(queue, 'pending')) == 0
        and redis.call('SCARD', q_key(queue, 'running')) == 0
        and redis.call('ZCARD', q_key(queue, 'failed')) == 0 then
        redis.call('SREM', QUEUES, queue)
        redis.call('DEL', q_key(queue, 'signal'))
    end
end

-- Lease the earliest due, then lowest, ready id of `queue` (after moving its due delayed ids
-- to the ready set, keeping their due times as scores).
-- Returns its TASK_FIELDS, or false when nothing is ready.
local function claim_next(queue, owner, lease_until, now, seed)
    local ready, delayed = q_key(queue, 'ready'), q_key(queue, 'delayed')
    local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES')
    if #due > 0 then
        for i = 1, #due, 2 do redis.call('ZADD', ready, due[i + 1], ready_member(due[i])) end
        redis.call('ZREMRANGEBYSCORE', delayed, '-inf', now)
    end
    local popped = redis.call('ZPOPMIN', ready)
    if #popped == 0 then return false end
    local id = string.format('%d', tonumber(popped[1]))
    local tokens = P .. ':tokens'
    if redis.call('EXISTS', tokens) == 0 then redis.call('SET', tokens, seed) end
    local token = string.format('%d', redis.call('INCR', tokens))
    local k = task_key(id)
    redis.call('ZREM', q_key(queue, 'pending'), id)
    redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('HSET', k, 'state', 'running', 'owner', owner, 'lease_until', lease_until,
        'lease_token', token)
    redis.call('ZADD', RUNNING, lease_until, id)
    redis.call('SADD', P .. ':owner:' .. owner, id)
    redis.call('SADD', q_key(queue, 'running'), id)
    local out = {}
    append_row(out, id, TASK_FIELDS)
    return out
end

-- Delete a task whose lease is `token` and enqueue the (queue, payload) pairs found in ARGV
-- from index `first` on. Returns 1, or 0 (changing nothing) when the lease is stale.
local function complete(id, token, now, first)
    local t = leased(id, token)
    if not t then return 0 end
    unindex_running(id, t)
    redis.call('DEL', task_key(id))
    for i = first, #ARGV, 2 do enqueue(ARGV[i], ARGV[i + 1], now, now) end
    forget_if_empty(t.queue)
    return 1
end
