-- The tasks a console filter matches (`TaskFilter::matches` is the reference): their
-- SUMMARY_FIELDS rows by id, after `after`, at most `limit` (mode `list`), or how many (mode
-- `count`). Candidates come from the state indexes of each queue: pending ones from the ready
-- and delayed sets, whose scores (run_at) narrow the time range; failed ones from the failed
-- set, walked by id; running ones from the running set. The task hashes are read only for a
-- text filter, or for the time of a running or failed task, and for the rows returned.
local mode, now = ARGV[2], tonumber(ARGV[3])
local queue, state = ARGV[4], ARGV[5]
local text = ARGV[6] == '1' and ARGV[7] or nil
local text_id = ARGV[8] ~= '' and ARGV[8] or nil
local since = ARGV[9] ~= '' and tonumber(ARGV[9]) or nil
local before = ARGV[10] ~= '' and tonumber(ARGV[10]) or nil
local after = tonumber(ARGV[11])
local limit = tonumber(ARGV[12])
local CHUNK = 1000

local function ms(x, inf)
    if x then return string.format('%d', x) end
    return inf
end

-- Whether the hash of `id` passes the text filter, and the time filter when `timed` (a task
-- whose index is not scored by run_at).
local function passes(id, timed)
    if timed and (since or before) then
        local at = tonumber(redis.call('HGET', task_key(id), 'run_at'))
        if not at or (since and at < since) or (before and at >= before) then return false end
    end
    if not text or id == text_id then return true end
    local f = redis.call('HMGET', task_key(id), 'payload', 'last_error')
    return (f[1] and string.find(f[1], text, 1, true) ~= nil)
        or (f[2] and string.find(f[2], text, 1, true) ~= nil) or false
end

-- The page so far: a max-heap of at most `limit` ids, so that the largest goes first.
local heap, count = {}, 0
local function full() return #heap >= limit end
local function push(n)
    heap[#heap + 1] = n
    local i = #heap
    while i > 1 do
        local parent = math.floor(i / 2)
        if heap[parent] >= heap[i] then break end
        heap[parent], heap[i] = heap[i], heap[parent]
        i = parent
    end
end
local function drop_largest()
    local size = #heap - 1
    heap[1] = heap[#heap]
    heap[#heap] = nil
    local i = 1
    while true do
        local l, r, m = 2 * i, 2 * i + 1, i
        if l <= size and heap[l] > heap[m] then m = l end
        if r <= size and heap[r] > heap[m] then m = r end
        if m == i then break end
        heap[m], heap[i] = heap[i], heap[m]
        i = m
    end
end

-- One candidate (a member of an index: an id, zero-padded in the ready set).
local function offer(member, timed)
    local n = tonumber(member)
    if n <= after or (mode == 'list' and full() and n >= heap[1]) then return end
    if not passes(string.format('%d', n), timed) then return end
    if mode == 'count' then
        count = count + 1
    else
        push(n)
        if #heap > limit then drop_largest() end
    end
end

-- Every member of a sorted set scored within [lo, hi], a chunk at a time (by rank).
local function each_in_range(key, lo, hi, fn)
    local first = lo == '-inf' and 0 or redis.call('ZCOUNT', key, '-inf', '(' .. lo)
    local n = redis.call('ZCOUNT', key, lo, hi)
    for i = 0, n - 1, CHUNK do
        local stop = first + math.min(i + CHUNK, n) - 1
        for _, member in ipairs(redis.call('ZRANGE', key, first + i, stop)) do fn(member) end
    end
end

-- Pending tasks of `q` due within [lo, hi] (nil: unbounded).
local function pending(q, lo, hi)
    if lo and hi and lo > hi then return end
    local slo, shi = ms(lo, '-inf'), ms(hi, '+inf')
    for _, key in ipairs({q_key(q, 'ready'), q_key(q, 'delayed')}) do
        if mode == 'count' and not text then
            count = count + redis.call('ZCOUNT', key, slo, shi)
        else
            each_in_range(key, slo, shi, function(member) offer(member, false) end)
        end
    end
end

local function running(q)
    local key = q_key(q, 'running')
    if mode == 'count' and not text and not since and not before then
        count = count + redis.call('SCARD', key)
        return
    end
    for _, id in ipairs(redis.call('SMEMBERS', key)) do offer(id, true) end
end

-- The failed set is scored by id: walked in order, it stops once the page is full.
local function failed(q)
    local key = q_key(q, 'failed')
    if mode == 'count' and not text and not since and not before then
        count = count + redis.call('ZCARD', key)
        return
    end
    local from = after
    while true do
        local ids = redis.call('ZRANGEBYSCORE', key, '(' .. ms(from), '+inf', 'LIMIT', 0, CHUNK)
        for _, id in ipairs(ids) do
            if mode == 'list' and full() and tonumber(id) >= heap[1] then return end
            offer(id, true)
        end
        if #ids < CHUNK then return end
        from = tonumber(ids[#ids])
    end
end

-- Completed tasks, scored by completion time (members zero-padded ids).
local function done(q)
    local lo, hi = ms(since, '-inf'), ms(before and before - 1, '+inf')
    local key = q_key(q, 'done')
    if mode == 'count' and not text then
        count = count + redis.call('ZCOUNT', key, lo, hi)
        return
    end
    each_in_range(key, lo, hi, function(member) offer(member, false) end)
end

if state == 'done' then
    for _, q in ipairs(queue ~= '' and {queue} or redis.call('SMEMBERS', DONE_QUEUES)) do
        done(q)
    end
end
local queues = state == 'done' and {} or queue ~= '' and {queue} or redis.call('SMEMBERS', QUEUES)
for _, q in ipairs(queues) do
    if state == '' or state == 'ready' or state == 'delayed' then
        -- run_at in [since, before): whole milliseconds, so [since, before - 1].
        local lo, hi = since, before and before - 1
        if state == 'ready' then
            hi = hi and math.min(hi, now) or now
        elseif state == 'delayed' then
            lo = lo and math.max(lo, now + 1) or now + 1
        end
        pending(q, lo, hi)
    end
    if state == '' or state == 'running' then running(q) end
    if state == '' or state == 'failed' then failed(q) end
end

if mode == 'count' then return count end
table.sort(heap)
local out = {}
for _, n in ipairs(heap) do append_row(out, string.format('%d', n), SUMMARY_FIELDS) end
return out
