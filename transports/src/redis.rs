//! The Redis transport (`redis://`, `rediss://`, `redis+unix://`): tasks kept in a Redis server
//! shared by every worker process of a project, on any number of hosts.
//!
//! # URIs
//!
//! `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` or `redis+unix:///PATH?db=N[&user=U&pass=P]`, plus
//! an optional `key_prefix=NAME` query parameter (default `rex`, spelled like a queue name) that
//! names every key of this transport, so several projects can share one database. The other
//! parameters go to the `redis` crate as they are, except the TLS ones below. Passwords never
//! appear in [`describe`](Transport::describe), in errors or in logs. The server must be Redis
//! 6.0 or newer (or a compatible one with Lua scripting): `wait` uses fractional `BLPOP`
//! timeouts.
//!
//! `rediss://` connects over TLS and checks the server's certificate against the system's roots
//! and its host name. The parameters (named as in redis-py): `ssl_ca_certs=PATH` trusts the
//! PEM roots of a file instead of the system's; `ssl_certfile=PATH` + `ssl_keyfile=PATH`
//! present a client certificate and its PKCS#8 key (servers with `tls-auth-clients yes`);
//! `ssl_cert_reqs=none` checks nothing (encrypted, but open to a man in the middle).
//!
//! # Key layout (`P` is the key prefix)
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:ids` | string | the last task id (`INCR`) |
//! | `P:tokens` | string | the last lease token; see below |
//! | `P:task:ID` | hash | one task: `id queue payload state run_at created_at attempts errors crashes lease_token owner lease_until last_error history` (`history` is the JSON array of [`Attempt`](crate::Attempt)s) |
//! | `P:q:QUEUE:ready` | sorted set | pending ids whose `run_at` has passed, score = id: claims pop the lowest, FIFO by submission like SQLite's `ORDER BY id` |
//! | `P:q:QUEUE:delayed` | sorted set | pending ids not ready before `run_at` (delayed submits and retries), score = `run_at` |
//! | `P:q:QUEUE:pending` | sorted set | every pending id (ready and delayed), score = `created_at` (oldest pending, purge) |
//! | `P:q:QUEUE:running` | set | running ids of the queue (counts) |
//! | `P:q:QUEUE:failed` | sorted set | failed ids, score = id (oldest first) |
//! | `P:q:QUEUE:signal` | list | wake-up tokens for [`wait`](Transport::wait), at most 256 |
//! | `P:running` | sorted set | every running id, score = `lease_until` (expired leases) |
//! | `P:owner:OWNER` | set | running ids leased to one owner (`owned_by`, `renew`) |
//! | `P:queues` | set | queues that may have tasks (`stats`, `failed`, `retry_failed`) |
//! | `P:keys` | sorted set | used idempotency keys, all with score 0 so that they sort bytewise: `last_fire` is one reverse range query over a schedule's keys |
//!
//! Times are milliseconds since the Unix epoch, taken from the client's clock like the SQLite
//! transport does. Completed tasks are deleted.
//!
//! # Atomicity
//!
//! Every operation that changes anything is one Lua script (`EVALSHA`, loaded again by the
//! `redis` crate after a `NOSCRIPT`), so each state transition happens at once or not at all,
//! whichever client runs it: a claim moves the due delayed ids into the ready set, pops the
//! lowest id, bumps its attempt count and lease token and indexes it as running under its owner
//! in one step, so a claimed task is never only in a client's memory — if the worker dies, the
//! task is still running under its lease and `expired` finds it. Settlements compare the lease
//! token inside their script and change nothing when it is stale; `complete` enqueues its
//! follow-up submits in the same script (and `complete_and_claim` leases the next task in it
//! too: one round trip per task for a busy consumer), and a submit records its idempotency
//! key in the same script as the task. The scripts build key names from the prefix, which is fine on a single
//! Redis server (or a replicated one) but not on Redis Cluster.
//!
//! Lease tokens come from one counter per prefix, seeded from the clock (milliseconds × 1000)
//! when it is missing, so they still grow on every claim of a task and, unlike per-task
//! counters, are never issued twice even when the server restarts without its data: a worker
//! that held a lease before such a restart cannot settle a newer task that reused the id.
//!
//! # Waiting
//!
//! [`wait`](Transport::wait) blocks on the server instead of polling. Every script that makes
//! a task ready (submit, release, a failure retried now, `retry_failed`) pushes a token to the queue's signal list,
//! and so does one that makes a delayed task the queue's earliest. A waiter first checks in
//! one script whether a task is ready (then it returns at once); if not, the same script
//! clears the stale tokens (there is nothing ready for them to announce) and reports the
//! earliest delayed `run_at`. It then `BLPOP`s the signal list until a token arrives, its
//! timeout passes or the earliest delayed task becomes due. `BLPOP` blocks its connection, so
//! it runs on connections of its own (kept in a small pool), never on the shared one.
//! Wake-ups may be spurious (a token popped by one waiter whose task another consumer
//! claimed); consumers claim again, as the contract allows.
//!
//! # Connections and outages
//!
//! Opening a transport does not connect: the first operation does. Commands share one
//! multiplexed [`ConnectionManager`], which reconnects by itself after the connection drops.
//! Failures to reach the server (refused, reset, timed out, server loading...) are
//! [`TransportError::Unavailable`], the retryable error: an operation that failed that way
//! may be retried, and once the server is back — even restarted empty — operations work again
//! on the same transport. Read-only operations retry once themselves after a dropped
//! connection; state changes do not (whether the server ran them is unknown), so the worker's
//! backoff retries them — at least once: a settlement retried after it did run is refused as
//! stale, a submit retried after it did run is enqueued twice (unless it has an idempotency
//! key). The connections of a Tokio runtime are driven by that runtime's
//! tasks, so each runtime that uses the transport (the CLI uses several current-thread
//! runtimes) gets connections of its own.

use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ErrorKind, FromRedisValue, RedisError, Script,
    ServerErrorKind, TlsCertificates, Value,
};
use tokio::runtime::{Handle, Id as RuntimeId};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::task::{
    add_ms, from_epoch_ms, now_ms, percent_decode, schedule_key_prefix, schedule_key_time,
    to_epoch_ms,
};
use crate::tls::{TlsSettings, Verify};
use crate::{
    Attempt, Failure, FailureKind, Lease, Payload, PurgeWhich, QueueCounts, QueueStats, Result,
    Selector, Submit, SubmitOptions, Task, TaskId, TaskState, TaskSummary, Transport,
    TransportError, validate_queue_name,
};

const TRANSPORT: &str = "Redis";
/// The key prefix when the URI names none.
const DEFAULT_PREFIX: &str = "rex";
/// Connecting (TCP and handshake) gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A command on the shared connection gives up after this long, and the connection is then
/// replaced (a half-open TCP connection never fails by itself). Scripts are short; an
/// operator's `retry_failed` over a huge queue is the longest.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection attempts per (re)connection, with exponential backoff from 100 ms: an operation
/// during an outage fails within about a second, and the caller's backoff takes over.
const CONNECT_RETRIES: usize = 3;
/// One `BLPOP` blocks at most this long; `wait` then checks the queue again and blocks anew.
const MAX_BLOCK: Duration = Duration::from_secs(60);
/// A `BLPOP` whose reply is this late after its own timeout is abandoned with its connection
/// (a half-open TCP connection would otherwise block the waiter forever).
const BLOCK_GRACE: Duration = Duration::from_secs(5);
/// Idle blocking connections kept per runtime for the next `wait`.
const IDLE_BLOCKING_CONNECTIONS: usize = 4;
/// Runtimes whose connections are kept; the oldest are dropped beyond this.
const MAX_RUNTIMES: usize = 8;

/// Shared by every script: `ARGV[1]` is the key prefix. Ids, counts and times travel as
/// decimal strings and are stored as such, so no large number goes through Lua's doubles.
const PRELUDE: &str = r#"
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

-- Index a pending task as ready (run_at <= now) or delayed.
local function index_pending(queue, id, run_at, now, created_at)
    redis.call('ZADD', q_key(queue, 'pending'), created_at, id)
    if tonumber(run_at) <= tonumber(now) then
        redis.call('ZADD', q_key(queue, 'ready'), id, id)
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

-- Lease the lowest ready id of `queue` (after moving its due delayed ids to the ready set).
-- Returns its TASK_FIELDS, or false when nothing is ready.
local function claim_next(queue, owner, lease_until, now, seed)
    local ready, delayed = q_key(queue, 'ready'), q_key(queue, 'delayed')
    local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now)
    if #due > 0 then
        for _, id in ipairs(due) do redis.call('ZADD', ready, id, id) end
        redis.call('ZREMRANGEBYSCORE', delayed, '-inf', now)
    end
    local popped = redis.call('ZPOPMIN', ready)
    if #popped == 0 then return false end
    local id = popped[1]
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
"#;

/// ARGV: queue, payload, run_at, now, has_key (`1`/`0`), key. Returns the id, or nil when
/// the idempotency key was used already.
const SUBMIT: &str = r#"
local queue, payload, run_at, now, has_key, key = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if has_key == '1' and redis.call('ZADD', P .. ':keys', 'NX', 0, key) == 0 then return false end
return enqueue(queue, payload, run_at, now)
"#;

/// ARGV: queue, owner, lease_until, now, token seed. Returns the task's TASK_FIELDS or nil.
const CLAIM: &str = r#"
return claim_next(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
"#;

/// ARGV: id, token, now, then (queue, payload) pairs. Returns 1, or 0 when stale.
const COMPLETE: &str = r#"
return complete(ARGV[2], ARGV[3], ARGV[4], 5)
"#;

/// ARGV: id, token, now, queue, owner, lease_until, token seed, then (queue, payload) pairs.
/// Returns {1 or 0 as `complete`, TASK_FIELDS of the next task or nil}.
const COMPLETE_AND_CLAIM: &str = r#"
local now = ARGV[4]
local done = complete(ARGV[2], ARGV[3], now, 9)
return {done, claim_next(ARGV[5], ARGV[6], ARGV[7], now, ARGV[8])}
"#;

/// ARGV: id, token, now, outcome (`error`/`crash`), reason, reason as JSON, retry_at (or
/// empty). Returns 1, or 0 when stale.
const FAIL: &str = r#"
local id, token, now, outcome, reason, reason_json, retry_at =
    ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local t = leased(id, token)
if not t then return 0 end
local k = task_key(id)
unindex_running(id, t)
record(id, t, outcome, reason_json, now)
redis.call('HINCRBY', k, outcome == 'crash' and 'crashes' or 'errors', 1)
redis.call('HSET', k, 'last_error', reason)
if retry_at ~= '' then
    redis.call('HSET', k, 'state', 'pending', 'run_at', retry_at)
    index_pending(t.queue, id, retry_at, now, t.created_at)
else
    redis.call('HSET', k, 'state', 'failed')
    redis.call('ZADD', q_key(t.queue, 'failed'), id, id)
end
return 1
"#;

/// ARGV: id, token, now, reason as JSON. Returns 1, or 0 when stale.
const RELEASE: &str = r#"
local id, token, now, reason_json = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t = leased(id, token)
if not t then return 0 end
local k = task_key(id)
unindex_running(id, t)
record(id, t, 'released', reason_json, now)
redis.call('HINCRBY', k, 'attempts', -1)
redis.call('HSET', k, 'state', 'pending', 'run_at', now)
index_pending(t.queue, id, now, now, t.created_at)
return 1
"#;

/// ARGV: owner. Returns flat TASK_FIELDS rows.
const OWNED_BY: &str = r#"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. ':owner:' .. ARGV[2])) do
    append_row(out, id, TASK_FIELDS)
end
return out
"#;

/// ARGV: now. Returns flat TASK_FIELDS rows of the leases that ended before now.
const EXPIRED: &str = r#"
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', RUNNING, '-inf', '(' .. ARGV[2])) do
    append_row(out, id, TASK_FIELDS)
end
return out
"#;

/// ARGV: lease_until, then owners (distinct). Returns how many leases were extended.
const RENEW: &str = r#"
local lease_until, n = ARGV[2], 0
for i = 3, #ARGV do
    for _, id in ipairs(redis.call('SMEMBERS', P .. ':owner:' .. ARGV[i])) do
        redis.call('HSET', task_key(id), 'lease_until', lease_until)
        redis.call('ZADD', RUNNING, lease_until, id)
        n = n + 1
    end
end
return n
"#;

/// ARGV: queue, now. Returns the six values of `counts`.
const COUNTS: &str = r#"
return counts(ARGV[2], ARGV[3])
"#;

/// ARGV: now. Returns flat rows: queue and the six values of `counts`, for every queue with
/// tasks; forgets the others.
const STATS: &str = r#"
local now, out = ARGV[2], {}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
    local c = counts(queue, now)
    if c[1] + c[2] + c[3] + c[4] == 0 then
        forget_if_empty(queue)
    else
        out[#out + 1] = queue
        for i = 1, 6 do out[#out + 1] = c[i] end
    end
end
return out
"#;

/// ARGV: queue (or empty for every queue). Returns flat SUMMARY_FIELDS rows.
const FAILED: &str = r#"
local queues = ARGV[2] ~= '' and {ARGV[2]} or redis.call('SMEMBERS', QUEUES)
local out = {}
for _, queue in ipairs(queues) do
    for _, id in ipairs(redis.call('ZRANGE', q_key(queue, 'failed'), 0, -1)) do
        append_row(out, id, SUMMARY_FIELDS)
    end
end
return out
"#;

/// ARGV: now, mode (`ids`, `queue`, `all`), then the ids or the queue. Returns how many
/// failed tasks became pending.
const RETRY_FAILED: &str = r#"
local now, mode = ARGV[2], ARGV[3]
local function retry(id)
    local k = task_key(id)
    local f = redis.call('HMGET', k, 'state', 'queue', 'created_at')
    if f[1] ~= 'failed' then return 0 end
    redis.call('ZREM', q_key(f[2], 'failed'), id)
    redis.call('HSET', k, 'state', 'pending', 'run_at', now, 'attempts', '0', 'errors', '0',
        'crashes', '0')
    index_pending(f[2], id, now, now, f[3])
    return 1
end
local n = 0
if mode == 'ids' then
    for i = 4, #ARGV do n = n + retry(ARGV[i]) end
else
    local queues = mode == 'queue' and {ARGV[4]} or redis.call('SMEMBERS', QUEUES)
    for _, queue in ipairs(queues) do
        for _, id in ipairs(redis.call('ZRANGE', q_key(queue, 'failed'), 0, -1)) do
            n = n + retry(id)
        end
    end
end
return n
"#;

/// ARGV: queue, which (`failed`/`pending`). Returns how many tasks were deleted.
const PURGE: &str = r#"
local queue, which = ARGV[2], ARGV[3]
local index = q_key(queue, which)
local ids = redis.call('ZRANGE', index, 0, -1)
for _, id in ipairs(ids) do redis.call('DEL', task_key(id)) end
redis.call('DEL', index)
if which == 'pending' then
    redis.call('DEL', q_key(queue, 'ready'), q_key(queue, 'delayed'))
end
forget_if_empty(queue)
return #ids
"#;

/// ARGV: cutoff (ms, zero-padded to 16 digits like the keys). Removes the schedule keys fired
/// before the cutoff except each schedule's latest (keys sort by schedule, then by time) and
/// returns how many.
const PRUNE_SCHEDULE_KEYS: &str = r#"
local set = P .. ':keys'
local cutoff = ARGV[2]
local keys = redis.call('ZRANGEBYLEX', set, '[schedule:', '(schedule;')
local removed = 0
for i = 1, #keys - 1 do
    local key, later = keys[i], keys[i + 1]
    if string.sub(later, 1, -17) == string.sub(key, 1, -17) and string.sub(key, -16) < cutoff then
        redis.call('ZREM', set, key)
        removed = removed + 1
    end
end
return removed
"#;

/// ARGV: queue, now. Returns {1} when a task is ready; otherwise clears the stale wake-up
/// tokens and returns {0, earliest delayed run_at or nil}.
const PROBE: &str = r#"
local queue, now = ARGV[2], ARGV[3]
local delayed = q_key(queue, 'delayed')
if redis.call('ZCARD', q_key(queue, 'ready')) > 0
    or redis.call('ZCOUNT', delayed, '-inf', now) > 0 then
    return {1}
end
redis.call('DEL', q_key(queue, 'signal'))
local next_run = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {0, next_run[2] or false}
"#;

/// The fields of `TASK_FIELDS` and `SUMMARY_FIELDS` rows.
const TASK_ROW: usize = 10;
const SUMMARY_ROW: usize = 10;
/// A `STATS` row: the queue and the six values of `counts`.
const STATS_ROW: usize = 7;

struct Scripts {
    submit: Script,
    claim: Script,
    complete: Script,
    complete_and_claim: Script,
    fail: Script,
    release: Script,
    owned_by: Script,
    expired: Script,
    renew: Script,
    counts: Script,
    stats: Script,
    failed: Script,
    retry_failed: Script,
    purge: Script,
    prune_schedule_keys: Script,
    probe: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
    Scripts {
        submit: script(SUBMIT),
        claim: script(CLAIM),
        complete: script(COMPLETE),
        complete_and_claim: script(COMPLETE_AND_CLAIM),
        fail: script(FAIL),
        release: script(RELEASE),
        owned_by: script(OWNED_BY),
        expired: script(EXPIRED),
        renew: script(RENEW),
        counts: script(COUNTS),
        stats: script(STATS),
        failed: script(FAILED),
        retry_failed: script(RETRY_FAILED),
        purge: script(PURGE),
        prune_schedule_keys: script(PRUNE_SCHEDULE_KEYS),
        probe: script(PROBE),
    }
});

/// Open the transport named by `uri` (connecting lazily, on first use).
pub fn open_uri(uri: &str) -> Result<Arc<dyn Transport>> {
    Ok(Arc::new(RedisTransport::open_uri(uri)?))
}

/// A transport backed by a Redis server.
pub struct RedisTransport {
    client: Client,
    prefix: String,
    /// `describe()`: the URI without secrets, and the prefix.
    display: String,
    /// Passwords of the URI, scrubbed from error messages.
    secrets: Vec<String>,
    /// Connections per Tokio runtime: each is driven by tasks of the runtime that made it.
    runtimes: Mutex<Vec<RuntimeConnections>>,
}

struct RuntimeConnections {
    runtime: RuntimeId,
    /// Connected on first use; left empty while connecting fails, so the next use tries again.
    shared: Arc<OnceCell<ConnectionManager>>,
    /// Idle connections for `BLPOP`.
    blocking: Vec<MultiplexedConnection>,
}

/// The parts of a transport URI.
#[derive(Debug, PartialEq, Eq)]
struct ParsedUri {
    /// The URI for the `redis` crate: without `key_prefix`.
    connect: String,
    prefix: String,
    /// The URI without `key_prefix`, with its passwords replaced by `***`.
    display: String,
    secrets: Vec<String>,
    /// For `rediss://`: what to trust and check.
    tls: Option<TlsSettings>,
}

fn parse_uri(uri: &str) -> Result<ParsedUri> {
    let invalid = |reason: String| TransportError::InvalidUri {
        uri: redact(uri),
        reason,
    };
    let (body, fragment) = match uri.split_once('#') {
        Some((body, fragment)) => (body, Some(fragment)),
        None => (uri, None),
    };
    let (base, query) = body.split_once('?').unwrap_or((body, ""));
    let mut prefix = None;
    let mut kept = Vec::new();
    let mut shown = Vec::new();
    let (mut ca, mut cert, mut key, mut verify) = (None, None, None, Verify::Full);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_decode(value)
                .ok_or_else(|| invalid(format!("{name} is not properly percent-encoded")))
        };
        match name {
            "key_prefix" => {
                if prefix.replace(value).is_some() {
                    return Err(invalid("key_prefix is given twice".to_string()));
                }
                continue;
            }
            "ssl_ca_certs" => ca = Some(decoded()?),
            "ssl_certfile" => cert = Some(decoded()?),
            "ssl_keyfile" => key = Some(decoded()?),
            "ssl_cert_reqs" => {
                verify = match value {
                    "required" => Verify::Full,
                    "none" => Verify::Nothing,
                    _ => {
                        return Err(invalid(format!(
                            "ssl_cert_reqs={value}: expected required (the default) or none"
                        )));
                    }
                }
            }
            _ => {
                kept.push(pair);
                shown.push(pair);
                continue;
            }
        }
        shown.push(pair);
    }
    let tls = if base.starts_with("rediss://") {
        Some(
            TlsSettings::from_files(
                verify,
                ("ssl_ca_certs", ca.as_deref()),
                ("ssl_certfile", cert.as_deref()),
                ("ssl_keyfile", key.as_deref()),
            )
            .map_err(&invalid)?,
        )
    } else {
        if ca.is_some() || cert.is_some() || key.is_some() || verify != Verify::Full {
            return Err(invalid(
                "the ssl_* parameters need TLS: use rediss://".to_string(),
            ));
        }
        None
    };
    let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
    if validate_queue_name(prefix).is_err() {
        return Err(invalid(format!(
            "key_prefix \"{prefix}\" must be spelled like a queue name (lowercase letters, digits and single underscores)"
        )));
    }
    let mut connect = base.to_string();
    if !kept.is_empty() {
        connect = format!("{connect}?{}", kept.join("&"));
    }
    let mut display = base.to_string();
    if !shown.is_empty() {
        display = format!("{display}?{}", shown.join("&"));
    }
    match fragment {
        Some(fragment) => {
            connect = format!("{connect}#{fragment}");
            display = format!("{display}#{fragment}");
        }
        // How the `redis` crate is told not to check the server's certificate.
        None if tls
            .as_ref()
            .is_some_and(|tls| tls.verify == Verify::Nothing) =>
        {
            connect = format!("{connect}#insecure");
        }
        None => {}
    }
    let mut secrets: Vec<String> = base
        .split_once("://")
        .map(|(_, rest)| &rest[..rest.find('/').unwrap_or(rest.len())])
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_string())
        .into_iter()
        .collect();
    for pair in &kept {
        if let Some(("pass" | "password", value)) = pair.split_once('=') {
            secrets.push(value.to_string());
        }
    }
    secrets.retain(|secret| !secret.is_empty());
    Ok(ParsedUri {
        display: redact(&display),
        connect,
        prefix: prefix.to_string(),
        secrets,
        tls,
    })
}

/// [`crate::redact_uri`], plus the `pass=` query parameter of `redis+unix://` URIs.
fn redact(uri: &str) -> String {
    let uri = crate::redact_uri(uri);
    let Some((base, query)) = uri.split_once('?') else {
        return uri;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name @ ("pass" | "password"), _)) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// Where the lease-token counter starts when it is missing (see the module docs).
fn token_seed(now: i64) -> String {
    now.saturating_mul(1000).to_string()
}

/// Milliseconds, or a score as Redis prints it (`1795000000300`, `1.7e+19`).
fn parse_ms(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|ms| ms as i64))
}

impl RedisTransport {
    /// Open `redis://...`, `redis+unix://...` (see the module docs). Does not connect.
    pub fn open_uri(uri: &str) -> Result<Self> {
        let scheme = uri.split_once("://").map_or("", |(scheme, _)| scheme);
        if !matches!(scheme, "redis" | "rediss" | "redis+unix") {
            return Err(TransportError::InvalidUri {
                uri: redact(uri),
                reason: "expected redis://, rediss:// or redis+unix://".to_string(),
            });
        }
        let parsed = parse_uri(uri)?;
        let client = match &parsed.tls {
            Some(TlsSettings {
                roots, identity, ..
            }) if roots.is_some() || identity.is_some() => Client::build_with_tls(
                parsed.connect.as_str(),
                TlsCertificates {
                    client_tls: identity.as_ref().map(|(cert, key)| ClientTlsConfig {
                        client_cert: cert.clone().into_bytes(),
                        client_key: key.clone().into_bytes(),
                    }),
                    root_cert: roots.clone().map(String::into_bytes),
                },
            ),
            _ => Client::open(parsed.connect.as_str()),
        }
        .map_err(|e| TransportError::InvalidUri {
            uri: parsed.display.clone(),
            reason: scrub(&e.to_string(), &parsed.secrets),
        })?;
        Ok(RedisTransport {
            client,
            display: format!("{TRANSPORT}({}, prefix {})", parsed.display, parsed.prefix),
            prefix: parsed.prefix,
            secrets: parsed.secrets,
            runtimes: Mutex::new(Vec::new()),
        })
    }

    /// The key prefix (`rex` unless the URI's `key_prefix` says otherwise).
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    fn runtimes(&self) -> MutexGuard<'_, Vec<RuntimeConnections>> {
        // Nothing here can panic half-way through an update.
        self.runtimes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connections of the current runtime, made if needed.
    fn with_runtime<T>(&self, f: impl FnOnce(&mut RuntimeConnections) -> T) -> Result<T> {
        let runtime = Handle::try_current()
            .map_err(|_| {
                TransportError::Unsupported(format!(
                    "{}: used outside a Tokio runtime",
                    self.display
                ))
            })?
            .id();
        let mut runtimes = self.runtimes();
        let index = match runtimes.iter().position(|r| r.runtime == runtime) {
            Some(index) => index,
            None => {
                if runtimes.len() >= MAX_RUNTIMES {
                    runtimes.remove(0);
                }
                runtimes.push(RuntimeConnections {
                    runtime,
                    shared: Arc::new(OnceCell::new()),
                    blocking: Vec::new(),
                });
                runtimes.len() - 1
            }
        };
        Ok(f(&mut runtimes[index]))
    }

    /// The shared connection of the current runtime.
    async fn connection(&self) -> Result<ConnectionManager> {
        let cell = self.with_runtime(|r| Arc::clone(&r.shared))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(CONNECT_RETRIES)
            .set_max_delay(Duration::from_secs(1));
        cell.get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(|e| self.error(e))
    }

    /// Run a script with the prefix and `args`. `idempotent` ones (reads) are sent again once
    /// after the connection dropped.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        args: &[String],
        idempotent: bool,
    ) -> Result<T> {
        let mut connection = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix);
        for arg in args {
            invocation.arg(arg);
        }
        let mut retried = false;
        loop {
            match invocation.invoke_async(&mut connection).await {
                Err(e) if idempotent && !retried && e.is_connection_dropped() => retried = true,
                result => return result.map_err(|e| self.command_error(e)),
            }
        }
    }

    /// `BLPOP` the signal list of `queue` for at most `block`. `true` when a token came.
    async fn blpop(&self, queue: &str, block: Duration) -> Result<bool> {
        let key = format!("{}:q:{queue}:signal", self.prefix);
        let seconds = format!("{:.3}", block.max(Duration::from_millis(1)).as_secs_f64());
        let mut command = ::redis::cmd("BLPOP");
        command.arg(&key).arg(&seconds);
        let mut retried = false;
        loop {
            let pooled = self.with_runtime(|r| r.blocking.pop())?;
            let reused = pooled.is_some();
            let mut connection = match pooled {
                Some(connection) => connection,
                None => self.blocking_connection().await?,
            };
            let reply = tokio::time::timeout(
                block + BLOCK_GRACE,
                command.query_async::<Option<(String, String)>>(&mut connection),
            )
            .await;
            match reply {
                // No reply long after the server's timeout: drop the connection as dead.
                Err(_) => return Ok(false),
                Ok(Ok(token)) => {
                    self.with_runtime(|r| {
                        if r.blocking.len() < IDLE_BLOCKING_CONNECTIONS {
                            r.blocking.push(connection);
                        }
                    })?;
                    return Ok(token.is_some());
                }
                // An idle connection may have died meanwhile (a server restart): try a new one.
                Ok(Err(e)) if reused && !retried && e.is_io_error() => retried = true,
                Ok(Err(e)) => return Err(self.error(e)),
            }
        }
    }

    async fn blocking_connection(&self) -> Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // BLPOP replies when it times out itself; `blpop` has its own guard.
            .set_response_timeout(None);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))?;
        // Lets operators see in CLIENT LIST whose waiters these are.
        ::redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(format!("{}:wait", self.prefix))
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(connection)
    }

    /// [`error`](Self::error) for a command on the shared connection. The connection manager
    /// reconnects by itself when the connection drops, but not after a timeout: then this
    /// runtime's next operation makes a new one.
    fn command_error(&self, e: RedisError) -> TransportError {
        if e.is_timeout() {
            // Outside a runtime there is nothing to replace.
            let _ = self.with_runtime(|r| r.shared = Arc::new(OnceCell::new()));
        }
        self.error(e)
    }

    /// Connection trouble is retryable ([`TransportError::Unavailable`]); the rest is not.
    fn error(&self, e: RedisError) -> TransportError {
        let retryable = e.is_io_error()
            || e.is_connection_dropped()
            || is_tls_failure(&e)
            || e.is_timeout()
            || e.code() == Some("BUSY")
            || matches!(
                e.kind(),
                ErrorKind::AuthenticationFailed
                    | ErrorKind::Server(
                        ServerErrorKind::BusyLoading
                            | ServerErrorKind::TryAgain
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ClusterDown
                            | ServerErrorKind::ReadOnly
                    )
            );
        let (transport, message) = (self.display.clone(), scrub(&e.to_string(), &self.secrets));
        if retryable {
            TransportError::Unavailable { transport, message }
        } else {
            TransportError::Backend { transport, message }
        }
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> TransportError {
        TransportError::Backend {
            transport: self.display.clone(),
            message: format!("unexpected data: {what}"),
        }
    }

    fn field<T: FromRedisValue>(&self, value: &Value, name: &str) -> Result<T> {
        ::redis::from_redis_value_ref(value)
            .map_err(|e| self.corrupt(format_args!("field {name}: {e}")))
    }

    /// A numeric field stored as a decimal string.
    fn number<T: std::str::FromStr>(&self, value: &Value, name: &str) -> Result<T> {
        let text: String = self.field(value, name)?;
        text.parse()
            .map_err(|_| self.corrupt(format_args!("field {name} = {text:?}")))
    }

    fn optional_ms(&self, value: &Value, name: &str) -> Result<Option<i64>> {
        match self.field::<Option<String>>(value, name)? {
            None => Ok(None),
            Some(text) => parse_ms(&text)
                .map(Some)
                .ok_or_else(|| self.corrupt(format_args!("field {name} = {text:?}"))),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, value: &Value, name: &str) -> Result<T> {
        let text: String = self.field(value, name)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(format_args!("field {name}: {e}")))
    }

    /// One TASK_FIELDS row.
    fn task(&self, row: &[Value]) -> Result<Task> {
        Ok(Task {
            id: self.number(&row[0], "id")?,
            queue: self.field(&row[1], "queue")?,
            payload: self.json(&row[2], "payload")?,
            attempt: self.number(&row[3], "attempts")?,
            errors: self.number(&row[4], "errors")?,
            crashes: self.number(&row[5], "crashes")?,
            lease_token: self.number(&row[6], "lease_token")?,
            owner: self
                .field::<Option<String>>(&row[7], "owner")?
                .unwrap_or_default(),
            lease_until: from_epoch_ms(self.optional_ms(&row[8], "lease_until")?.unwrap_or(0)),
            created_at: from_epoch_ms(self.number(&row[9], "created_at")?),
            lost: false,
        })
    }

    /// TASK_FIELDS rows, by id; rows of tasks deleted meanwhile (all nil) are skipped.
    fn tasks(&self, values: &[Value]) -> Result<Vec<Task>> {
        let mut tasks = values
            .chunks_exact(TASK_ROW)
            .filter(|row| row[0] != Value::Nil)
            .map(|row| self.task(row))
            .collect::<Result<Vec<_>>>()?;
        tasks.sort_by_key(|task| task.id);
        Ok(tasks)
    }

    /// One SUMMARY_FIELDS row.
    fn summary(&self, row: &[Value]) -> Result<TaskSummary> {
        let state: String = self.field(&row[2], "state")?;
        Ok(TaskSummary {
            id: self.number(&row[0], "id")?,
            queue: self.field(&row[1], "queue")?,
            state: TaskState::parse(&state)
                .ok_or_else(|| self.corrupt(format_args!("task state {state:?}")))?,
            payload: self.json(&row[3], "payload")?,
            attempts: self.number(&row[4], "attempts")?,
            errors: self.number(&row[5], "errors")?,
            crashes: self.number(&row[6], "crashes")?,
            last_error: self.field(&row[7], "last_error")?,
            history: self.json::<Vec<Attempt>>(&row[8], "history")?,
            created_at: from_epoch_ms(self.number(&row[9], "created_at")?),
        })
    }

    /// The six values of the `counts` Lua function.
    fn counts_from(&self, values: &[Value]) -> Result<(QueueCounts, Option<i64>)> {
        let count = |i: usize, name: &str| -> Result<u64> { self.field(&values[i], name) };
        Ok((
            QueueCounts {
                ready: count(0, "ready")?,
                delayed: count(1, "delayed")?,
                running: count(2, "running")?,
                failed: count(3, "failed")?,
                next_run_at: self
                    .optional_ms(&values[4], "next_run_at")?
                    .map(from_epoch_ms),
            },
            self.optional_ms(&values[5], "oldest created_at")?,
        ))
    }

    /// A claim's reply: TASK_FIELDS, or nil.
    fn claimed(&self, reply: &Value) -> Result<Option<Task>> {
        match reply {
            Value::Nil => Ok(None),
            Value::Array(row) if row.len() == TASK_ROW => self.task(row).map(Some),
            other => Err(self.corrupt(format_args!("a claim returned {other:?}"))),
        }
    }

    /// Validate follow-up submits (before anything changes) and add them to a script's ARGV.
    fn push_submits(&self, args: &mut Vec<String>, submits: &[Submit]) -> Result<()> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        for submit in submits {
            args.push(submit.queue.clone());
            args.push(self.encode(&submit.payload)?);
        }
        Ok(())
    }

    fn encode<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<String> {
        serde_json::to_string(value).map_err(|e| TransportError::Backend {
            transport: self.display.clone(),
            message: format!("cannot encode: {e}"),
        })
    }
}

/// `message` with every secret replaced by `***`.
fn scrub(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_string(), |message, secret| {
        message.replace(secret.as_str(), "***")
    })
}

#[async_trait::async_trait]
impl Transport for RedisTransport {
    fn describe(&self) -> String {
        self.display.clone()
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let run_at = opts.run_at.map_or(now, to_epoch_ms);
        let (has_key, key) = match &opts.idempotency_key {
            Some(key) => ("1", key.as_str()),
            None => ("0", ""),
        };
        let args = [
            queue.to_string(),
            self.encode(&payload)?,
            run_at.to_string(),
            now.to_string(),
            has_key.to_string(),
            key.to_string(),
        ];
        let id: Value = self.eval(&SCRIPTS.submit, &args, false).await?;
        match id {
            Value::Nil => Ok(None),
            id => self.number(&id, "id").map(Some),
        }
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let args = [
            queue.to_string(),
            owner.to_string(),
            add_ms(now, lease).to_string(),
            now.to_string(),
            token_seed(now),
        ];
        let row: Value = self.eval(&SCRIPTS.claim, &args, false).await?;
        self.claimed(&row)
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        let mut args = vec![
            lease.id.to_string(),
            lease.token.to_string(),
            now_ms().to_string(),
        ];
        self.push_submits(&mut args, submits)?;
        let done: i64 = self.eval(&SCRIPTS.complete, &args, false).await?;
        Ok(done == 1)
    }

    /// Both in one script, so one round trip per task in a busy consumer.
    async fn complete_and_claim(
        &self,
        lease: &Lease,
        submits: &[Submit],
        queue: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<(bool, Option<Task>)> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let mut args = vec![
            lease.id.to_string(),
            lease.token.to_string(),
            now.to_string(),
            queue.to_string(),
            owner.to_string(),
            add_ms(now, lease_for).to_string(),
            token_seed(now),
        ];
        self.push_submits(&mut args, submits)?;
        let reply: Vec<Value> = self.eval(&SCRIPTS.complete_and_claim, &args, false).await?;
        match reply.as_slice() {
            [done, next] => Ok((self.field::<i64>(done, "done")? == 1, self.claimed(next)?)),
            [done] => Ok((self.field::<i64>(done, "done")? == 1, None)),
            _ => Err(self.corrupt(format_args!(
                "complete_and_claim returned {} values",
                reply.len()
            ))),
        }
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let outcome = match failure.kind {
            FailureKind::Error => "error",
            FailureKind::Crash => "crash",
        };
        let args = [
            lease.id.to_string(),
            lease.token.to_string(),
            now_ms().to_string(),
            outcome.to_string(),
            failure.reason.clone(),
            self.encode(&failure.reason)?,
            retry_at.map_or(String::new(), |t| to_epoch_ms(t).to_string()),
        ];
        let changed: i64 = self.eval(&SCRIPTS.fail, &args, false).await?;
        Ok(changed == 1)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let args = [
            lease.id.to_string(),
            lease.token.to_string(),
            now_ms().to_string(),
            self.encode(reason)?,
        ];
        let changed: i64 = self.eval(&SCRIPTS.release, &args, false).await?;
        Ok(changed == 1)
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        let rows: Vec<Value> = self
            .eval(&SCRIPTS.owned_by, &[owner.to_string()], true)
            .await?;
        self.tasks(&rows)
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        let rows: Vec<Value> = self
            .eval(&SCRIPTS.expired, &[to_epoch_ms(now).to_string()], true)
            .await?;
        self.tasks(&rows)
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        let mut args = vec![add_ms(now_ms(), lease).to_string()];
        let distinct: std::collections::BTreeSet<&String> = owners.iter().collect();
        args.extend(distinct.into_iter().cloned());
        self.eval(&SCRIPTS.renew, &args, false).await
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        let args = [queue.to_string(), now_ms().to_string()];
        let values: Vec<Value> = self.eval(&SCRIPTS.counts, &args, true).await?;
        if values.len() != 6 {
            return Err(self.corrupt(format_args!("counts returned {} values", values.len())));
        }
        Ok(self.counts_from(&values)?.0)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = now_ms();
        let rows: Vec<Value> = self.eval(&SCRIPTS.stats, &[now.to_string()], true).await?;
        let mut stats = rows
            .chunks_exact(STATS_ROW)
            .map(|row| {
                let (counts, oldest) = self.counts_from(&row[1..])?;
                Ok(QueueStats {
                    queue: self.field(&row[0], "queue")?,
                    pending: counts.ready + counts.delayed,
                    delayed: counts.delayed,
                    running: counts.running,
                    failed: counts.failed,
                    oldest_pending_ms: oldest
                        .map(|created| u64::try_from(now.saturating_sub(created)).unwrap_or(0)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        stats.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(stats)
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        let rows: Vec<Value> = self
            .eval(
                &SCRIPTS.failed,
                &[queue.unwrap_or_default().to_string()],
                true,
            )
            .await?;
        let mut summaries = rows
            .chunks_exact(SUMMARY_ROW)
            .filter(|row| row[0] != Value::Nil)
            .map(|row| self.summary(row))
            .collect::<Result<Vec<_>>>()?;
        summaries.sort_by_key(|summary| summary.id);
        Ok(summaries)
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<u64> {
        let mut args = vec![now_ms().to_string()];
        match selector {
            Selector::Ids(ids) => {
                args.push("ids".to_string());
                args.extend(ids.iter().map(TaskId::to_string));
            }
            Selector::Queue(queue) => {
                validate_queue_name(queue)?;
                args.push("queue".to_string());
                args.push(queue.clone());
            }
            Selector::All => args.push("all".to_string()),
        }
        self.eval(&SCRIPTS.retry_failed, &args, false).await
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        let which = match which {
            PurgeWhich::Failed => "failed",
            PurgeWhich::Pending => "pending",
        };
        self.eval(
            &SCRIPTS.purge,
            &[queue.to_string(), which.to_string()],
            false,
        )
        .await
    }

    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        let cutoff = format!("{:016}", to_epoch_ms(before).max(0));
        self.eval(&SCRIPTS.prune_schedule_keys, &[cutoff], true)
            .await
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let prefix = schedule_key_prefix(schedule);
        // Keys of one schedule are contiguous: `prefix` < key < `prefix` with ':' bumped to ';'.
        let upper = format!("{};", &prefix[..prefix.len() - 1]);
        let mut command = ::redis::cmd("ZREVRANGEBYLEX");
        command
            .arg(format!("{}:keys", self.prefix))
            .arg(format!("({upper}"))
            .arg(format!("({prefix}"))
            .arg("LIMIT")
            .arg(0)
            .arg(1);
        let mut connection = self.connection().await?;
        let keys: Vec<String> = match command.query_async(&mut connection).await {
            Err(e) if e.is_connection_dropped() => command.query_async(&mut connection).await,
            result => result,
        }
        .map_err(|e| self.command_error(e))?;
        Ok(keys.first().and_then(|key| schedule_key_time(key)))
    }

    /// Returns as soon as a task is ready in `queue` (announced by a wake-up token, or due by
    /// its `run_at`), or when `timeout` passes. See the module docs.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        let start = Instant::now();
        let deadline = start
            .checked_add(timeout)
            .unwrap_or_else(|| start + Duration::from_secs(365 * 86_400));
        loop {
            let now = now_ms();
            let args = [queue.to_string(), now.to_string()];
            let probe: Vec<Value> = self.eval(&SCRIPTS.probe, &args, true).await?;
            if probe.first() != Some(&Value::Int(0)) {
                return Ok(()); // a task is ready
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let mut block = left.min(MAX_BLOCK);
            let next_run_at = match probe.get(1) {
                Some(next) => self.optional_ms(next, "next_run_at")?,
                None => None,
            };
            if let Some(next_run_at) = next_run_at {
                // One millisecond more, so that the task is due when we wake up.
                let until_due = u64::try_from(next_run_at.saturating_sub(now)).unwrap_or(0);
                block = block.min(Duration::from_millis(until_due.saturating_add(1)));
            }
            if self.blpop(queue, block).await? {
                return Ok(());
            }
        }
    }
}

/// A failed TLS handshake (an unknown CA, a refused client certificate): a connection
/// failure like any other, as on the other transports — the server or its certificate may be
/// fixed while the workers wait. redis-rs keeps the native-tls error behind an `Arc`.
fn is_tls_failure(e: &RedisError) -> bool {
    std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>())
        .is_some_and(|inner| inner.is::<native_tls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_lose_their_key_prefix_and_secrets() {
        let parsed =
            parse_uri("redis://u:s3cret@host:6380/2?key_prefix=app_one&protocol=resp3").unwrap();
        assert_eq!(
            parsed,
            ParsedUri {
                connect: "redis://u:s3cret@host:6380/2?protocol=resp3".to_string(),
                prefix: "app_one".to_string(),
                display: "redis://u:***@host:6380/2?protocol=resp3".to_string(),
                secrets: vec!["s3cret".to_string()],
                tls: None,
            }
        );
        let parsed = parse_uri("redis+unix:///run/redis.sock?db=3&pass=hush").unwrap();
        assert_eq!(parsed.prefix, "rex");
        assert_eq!(parsed.display, "redis+unix:///run/redis.sock?db=3&pass=***");
        assert_eq!(parsed.secrets, ["hush"]);
        assert_eq!(
            parse_uri("redis://h?key_prefix=abc").unwrap().connect,
            "redis://h"
        );
        for bad in [
            "redis://h?key_prefix=",
            "redis://h?key_prefix=Bad",
            "redis://h?key_prefix=a:b",
            "redis://h?key_prefix=ab&key_prefix=cd",
        ] {
            assert!(
                matches!(parse_uri(bad), Err(TransportError::InvalidUri { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn tls_parameters() {
        let parsed = parse_uri("rediss://h:6390/0").unwrap();
        assert_eq!(parsed.tls.unwrap().verify, Verify::Full);
        assert_eq!(parsed.connect, "rediss://h:6390/0");
        let parsed = parse_uri("rediss://h/0?ssl_cert_reqs=none&key_prefix=ab").unwrap();
        assert_eq!(parsed.tls.unwrap().verify, Verify::Nothing);
        assert_eq!(parsed.connect, "rediss://h/0#insecure");
        assert_eq!(parsed.display, "rediss://h/0?ssl_cert_reqs=none");
        let reason = |uri: &str| match parse_uri(uri) {
            Err(TransportError::InvalidUri { reason, .. }) => reason,
            other => panic!("{uri}: {other:?}"),
        };
        assert!(reason("redis://h?ssl_cert_reqs=none").contains("use rediss://"));
        assert!(reason("rediss://h?ssl_cert_reqs=maybe").contains("expected required"));
        assert!(
            reason("rediss://h?ssl_ca_certs=/nonexistent.pem")
                .starts_with("ssl_ca_certs=/nonexistent.pem: ")
        );
        assert_eq!(
            reason("rediss://h?ssl_keyfile=/k.pem"),
            "ssl_certfile and ssl_keyfile go together"
        );
    }

    #[test]
    fn scores_parse_as_milliseconds() {
        assert_eq!(parse_ms("1795000000300"), Some(1_795_000_000_300));
        assert_eq!(parse_ms("1.5e3"), Some(1500));
        assert_eq!(parse_ms("x"), None);
    }

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(
            scrub("AUTH failed for hush", &["hush".to_string()]),
            "AUTH failed for ***"
        );
    }
}
