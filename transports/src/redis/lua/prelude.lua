local P = ARGV[1]
local RUNNING = P .. ':running'
local QUEUES = P .. ':queues'
local PAUSED = P .. ':paused'
-- The queues that have completed tasks kept (each in `q:QUEUE:done`, scored by completion).
local DONE_QUEUES = P .. ':done_queues'
local function task_key(id) return P .. ':task:' .. id end
local function q_key(queue, what) return P .. ':q:' .. queue .. ':' .. what end
local TASK_FIELDS = {'id', 'queue', 'payload', 'attempts', 'errors', 'crashes', 'lease_token',
    'owner', 'lease_until', 'created_at'}
local SUMMARY_FIELDS = {'id', 'queue', 'state', 'payload', 'attempts', 'errors', 'crashes',
    'last_error', 'history', 'created_at', 'run_at', 'owner', 'result', 'started_at'}

-- Append the fields of a task to `out` (flat rows of `fields`).
local function append_row(out, id, fields)
    local values = redis.call('HMGET', task_key(id), unpack(fields))
    for i = 1, #fields do out[#out + 1] = values[i] end
end

-- The most wake-up tokens a signal list keeps: enough for every blocked waiter.
local MAX_SIGNALS = 256

-- Wake-ups of a batch script, counted per queue and pushed by `flush_wakes` at its end; nil
-- (push at once) in the other scripts. Nothing sees a list while a script runs, so pushing
-- min(n, 256) tokens at the end leaves each signal list as n one-at-a-time pushes would.
local deferred_wakes = nil

-- Wake a waiter of `queue` (at most MAX_SIGNALS tokens are kept).
local function wake(queue)
    if deferred_wakes then
        deferred_wakes[queue] = (deferred_wakes[queue] or 0) + 1
        return
    end
    local signal = q_key(queue, 'signal')
    redis.call('RPUSH', signal, '1')
    redis.call('LTRIM', signal, -MAX_SIGNALS, -1)
end

-- Push the wake-ups a batch deferred (see `deferred_wakes`).
local function flush_wakes()
    for queue, n in pairs(deferred_wakes) do
        local signal, tokens = q_key(queue, 'signal'), {}
        for i = 1, math.min(n, MAX_SIGNALS) do tokens[i] = '1' end
        redis.call('RPUSH', signal, unpack(tokens))
        redis.call('LTRIM', signal, -MAX_SIGNALS, -1)
    end
    deferred_wakes = nil
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

-- The hash of a new pending task (not indexed yet).
local function new_task(id, queue, payload, run_at, now)
    redis.call('HSET', task_key(id), 'id', id, 'queue', queue, 'payload', payload,
        'state', 'pending', 'run_at', run_at, 'created_at', now, 'attempts', '0',
        'errors', '0', 'crashes', '0', 'lease_token', '0', 'history', '[]')
end

local function enqueue(queue, payload, run_at, now)
    local id = string.format('%d', redis.call('INCR', P .. ':ids'))
    new_task(id, queue, payload, run_at, now)
    redis.call('SADD', QUEUES, queue)
    index_pending(queue, id, run_at, now, now)
    return id
end

-- The task's state, queue, owner, attempts and created_at if `token` is its current lease.
local function leased(id, token)
    local f = redis.call('HMGET', task_key(id), 'state', 'lease_token', 'queue', 'owner',
        'attempts', 'created_at', 'started_at')
    if f[1] ~= 'running' or f[2] ~= token then return nil end
    return {queue = f[3], owner = f[4], attempts = f[5], created_at = f[6],
        started_at = f[7] or 'null'}
end

-- Drop a running task from the running indexes (and its lease fields, unless the caller
-- deletes the whole task anyway, or keeps them: a completed task keeps its owner).
local function unindex_running(id, t, deleting)
    redis.call('ZREM', RUNNING, id)
    redis.call('SREM', P .. ':owner:' .. t.owner, id)
    redis.call('SREM', q_key(t.queue, 'running'), id)
    if not deleting then redis.call('HDEL', task_key(id), 'owner', 'lease_until') end
end

-- Append one attempt to the task's history; `reason_json` is a JSON string already.
local function record(id, t, outcome, reason_json, now)
    local k = task_key(id)
    local entry = '{"attempt":' .. t.attempts .. ',"owner":' .. cjson.encode(t.owner) ..
        ',"outcome":"' .. outcome .. '","reason":' .. reason_json .. ',"started_at":' ..
        (t.started_at or 'null') .. ',"finished_at":' .. now .. '}'
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
        if deferred_wakes then deferred_wakes[queue] = nil end
    end
end

-- `redis.call(command, key, ...)` with the values of `args`, a few thousand at a time (Lua's
-- `unpack` is limited); `step` is even, so pairs stay together.
local function call_many(command, key, args)
    local step = 4000
    for i = 1, #args, step do
        redis.call(command, key, unpack(args, i, math.min(i + step - 1, #args)))
    end
end

-- Lease up to `max` ready ids of `queue` (none while it is paused), earliest due then lowest first (after moving its due
-- delayed ids to the ready set, keeping their due times as scores), and append their
-- TASK_FIELDS to `out` in that order: each task's row once it is fully leased.
local function claim_many(out, queue, owner, lease_until, now, seed, max)
    -- A paused queue hands out nothing.
    if redis.call('SISMEMBER', PAUSED, queue) == 1 then return end
    local ready, delayed = q_key(queue, 'ready'), q_key(queue, 'delayed')
    local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES')
    if #due > 0 then
        for i = 1, #due, 2 do redis.call('ZADD', ready, due[i + 1], ready_member(due[i])) end
        redis.call('ZREMRANGEBYSCORE', delayed, '-inf', now)
    end
    local popped = redis.call('ZPOPMIN', ready, max)
    local n = #popped / 2
    if n == 0 then return end
    local ids, by_lease = {}, {}
    for i = 1, n do
        local id = string.format('%d', tonumber(popped[2 * i - 1]))
        ids[i] = id
        by_lease[2 * i - 1], by_lease[2 * i] = lease_until, id
    end
    -- One token each, in claim order: the counter's next n values.
    local tokens = P .. ':tokens'
    if redis.call('EXISTS', tokens) == 0 then redis.call('SET', tokens, seed) end
    local last = redis.call('INCRBY', tokens, n)
    call_many('ZREM', q_key(queue, 'pending'), ids)
    call_many('ZADD', RUNNING, by_lease)
    call_many('SADD', P .. ':owner:' .. owner, ids)
    call_many('SADD', q_key(queue, 'running'), ids)
    for i, id in ipairs(ids) do
        local k = task_key(id)
        local f = redis.call('HMGET', k, 'payload', 'attempts', 'errors', 'crashes', 'created_at')
        local attempts = string.format('%d', (tonumber(f[2]) or 0) + 1)
        local token = string.format('%d', last - n + i)
        redis.call('HSET', k, 'state', 'running', 'attempts', attempts, 'owner', owner,
            'lease_until', lease_until, 'lease_token', token, 'started_at', now)
        -- Its TASK_FIELDS row, from what is known already.
        local row = {id, queue, f[1], attempts, f[3], f[4], token, owner, lease_until, f[5]}
        for j = 1, #TASK_FIELDS do out[#out + 1] = row[j] end
    end
end

-- `claim_many` of one task: its TASK_FIELDS, or false when nothing is ready.
local function claim_next(queue, owner, lease_until, now, seed)
    local out = {}
    claim_many(out, queue, owner, lease_until, now, seed, 1)
    return #out > 0 and out
end

-- Keep a task whose lease is `token` as done (with `result`, JSON text, unless empty) until
-- pruned, and enqueue the (queue, payload) pairs found in ARGV[first..last]. Returns 1, or 0
-- (changing nothing) when the lease is stale. Its last attempt is not appended to the
-- history (a rewrite of the whole string): it is read from `owner`, `started_at` and
-- `run_at`, which stay.
local function complete(id, token, now, result, first, last)
    local t = leased(id, token)
    if not t then return 0 end
    local k = task_key(id)
    -- Out of the running indexes, its owner field kept (as a deletion would).
    unindex_running(id, t, true)
    redis.call('HSET', k, 'state', 'done', 'run_at', now)
    if result ~= '' then redis.call('HSET', k, 'result', result) end
    redis.call('ZADD', q_key(t.queue, 'done'), now, ready_member(id))
    redis.call('SADD', DONE_QUEUES, t.queue)
    for i = first, last, 2 do enqueue(ARGV[i], ARGV[i + 1], now, now) end
    forget_if_empty(t.queue)
    return 1
end

-- Record a failed attempt of a task whose lease is `token` (`outcome`: `error`, `crash` or
-- `cancelled`):
-- pending again from `retry_at`, or failed when it is empty (its run_at is then the time it
-- failed, what listings show and filter on). Returns 1, or 0 when stale.
local function fail(id, token, now, outcome, reason, reason_json, retry_at)
    local t = leased(id, token)
    if not t then return 0 end
    local k = task_key(id)
    unindex_running(id, t)
    record(id, t, outcome, reason_json, now)
    -- A cancellation is neither an error nor a crash of the task.
    if outcome ~= 'cancelled' then
        redis.call('HINCRBY', k, outcome == 'crash' and 'crashes' or 'errors', 1)
    end
    redis.call('HSET', k, 'last_error', reason)
    if retry_at ~= '' then
        redis.call('HSET', k, 'state', 'pending', 'run_at', retry_at)
        index_pending(t.queue, id, retry_at, now, t.created_at)
    else
        redis.call('HSET', k, 'state', 'failed', 'run_at', now)
        redis.call('ZADD', q_key(t.queue, 'failed'), id, id)
    end
    return 1
end

-- Put a task whose lease is `token` back to pending, giving its attempt back. It keeps its
-- place: it was due, so its due time is kept (at most now). Returns 1, or 0 when stale.
local function release(id, token, now, reason_json)
    local t = leased(id, token)
    if not t then return 0 end
    local k = task_key(id)
    local run_at = math.min(tonumber(redis.call('HGET', k, 'run_at')) or tonumber(now), tonumber(now))
    run_at = string.format('%d', run_at)
    unindex_running(id, t)
    record(id, t, 'released', reason_json, now)
    redis.call('HINCRBY', k, 'attempts', -1)
    redis.call('HSET', k, 'state', 'pending', 'run_at', run_at)
    index_pending(t.queue, id, run_at, now, t.created_at)
    return 1
end

-- Apply the settlements found in ARGV from index `i` on, in order, each fenced by its own
-- token. Each is `complete ID TOKEN RESULT N` then N (queue, payload) pairs, `fail ID TOKEN OUTCOME
-- REASON REASON_JSON RETRY_AT` or `release ID TOKEN REASON_JSON`. Returns one 1 (applied) or
-- 0 (stale) per settlement.
local function settle(i, now)
    local applied = {}
    while i <= #ARGV do
        local kind, id, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
        if kind == 'complete' then
            local first, result = i + 5, ARGV[i + 3]
            i = first + 2 * tonumber(ARGV[i + 4])
            applied[#applied + 1] = complete(id, token, now, result, first, i - 1)
        elseif kind == 'fail' then
            applied[#applied + 1] = fail(id, token, now, ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
                ARGV[i + 6])
            i = i + 7
        elseif kind == 'release' then
            applied[#applied + 1] = release(id, token, now, ARGV[i + 3])
            i = i + 4
        else
            error('unknown settlement kind ' .. tostring(kind))
        end
    end
    return applied
end
