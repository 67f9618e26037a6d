//! The Lua scripts (in `lua/`) and the key layout they share, and [`RedisTransport::eval`],
//! which runs them: every operation that changes anything is one of these scripts, so this is
//! where the data model lives.
//!
//! # Key layout (`P` is the key prefix)
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:ids` | string | the last task id (`INCR`) |
//! | `P:tokens` | string | the last lease token; see the module docs |
//! | `P:task:ID` | hash | one task: `id queue payload state run_at created_at attempts errors crashes lease_token owner lease_until last_error history` (`history` is the JSON array of [`Attempt`](crate::Attempt)s; `run_at` is the due time, a running task's claimed due time, a failed task's time of failure; `owner` and `lease_until` exist while it runs) |
//! | `P:q:QUEUE:ready` | sorted set | pending ids whose `run_at` has passed, zero-padded to 20 digits, score = `run_at`: claims pop the lowest, so the earliest due task goes first and equal due times go by id (the claim order of every transport) |
//! | `P:q:QUEUE:delayed` | sorted set | pending ids not ready before `run_at` (delayed submits and retries), score = `run_at` |
//! | `P:q:QUEUE:pending` | sorted set | every pending id (ready and delayed), score = `created_at` (oldest pending, purge) |
//! | `P:q:QUEUE:running` | set | running ids of the queue (counts, listings) |
//! | `P:q:QUEUE:failed` | sorted set | failed ids, score = id (oldest first; listings page through it by id) |
//! | `P:q:QUEUE:signal` | list | wake-up tokens for [`wait`](crate::Transport::wait), at most 256 |
//! | `P:running` | sorted set | every running id, score = `lease_until` (expired leases) |
//! | `P:owner:OWNER` | set | running ids leased to one owner (`owned_by`, `renew`) |
//! | `P:queues` | set | queues that may have tasks (`stats`, `failed`, `retry_failed`, listings) |
//! | `P:paused` | set | paused queues: the claim scripts check it (`SISMEMBER`) and hand out nothing, the probe of `wait` blocks; resuming pushes wake-up tokens |
//! | `P:master:ID` | string | one master's heartbeat ([`MasterRecord`](crate::MasterRecord) as JSON), expiring (`PX`) at its `expires_at` |
//! | `P:masters` | sorted set | master ids, score = `expires_at` (`masters` reads the unexpired ones; `beat` drops the expired) |
//! | `P:cancel_requests` | sorted set | `ID:ATTEMPT` of running attempts an operator cancelled, score = when (kept an hour; masters read them) |
//! | `P:paused_schedules` | set | paused schedule ids (`SADD`/`SREM`, no script: nothing else changes with them) |
//! | `P:history:MINUTE:QUEUE` | hash | one queue's counters of one minute ([`Counters`](crate::Counters): `succeeded failed retried crashed run_sum_ms wait_sum_ms run0`…`run12 wait0`…`wait12`), added to with `HINCRBY`, expiring a day after its last change |
//! | `P:history` | sorted set | `MINUTE:QUEUE` members, score = minute (`history` reads a range; `history_add` drops the entries older than a day) |
//! | `P:history_recording:NAME` | string | a recording made (expires after a day): its repeat adds nothing |
//! | `P:keys` | sorted set | used idempotency keys, all with score 0 so that they sort bytewise: `last_fire` is one reverse range query over a schedule's keys |
//!
//! The scripts build these names from the prefix (`lua/prelude.lua`); the Rust side names
//! only `P:keys` (`last_fire`), `P:paused` (`paused`), `P:paused_schedules`,
//! `P:cancel_requests` and `P:q:QUEUE:signal` (`BLPOP` in `wait`) itself.
//!
//! Console listings (`lua/list.lua`) have no index of their own: they read the state indexes
//! above, the pending ones by score (`run_at`: the time filters are score ranges), the failed
//! ones by id, and keep the `limit` lowest ids after the page's start (keyset pagination), so a
//! listing of pending tasks reads the ids of the queue's pending tasks in that time range, and
//! a text filter reads their hashes too (payload, last error): O(tasks of the queue).

use std::sync::LazyLock;

use ::redis::{FromRedisValue, Script};

use super::RedisTransport;
use crate::Result;

/// Shared by every script: `ARGV[1]` is the key prefix. Ids, counts and times travel as
/// decimal strings and are stored as such, so no large number goes through Lua's doubles.
const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The scripts, each `PRELUDE` then its own body; the `ARGV` below start at `ARGV[2]`.
pub(super) struct Scripts {
    /// ARGV: queue, payload, run_at, now, has_key (`1`/`0`), key. Returns the id, or nil when
    /// the idempotency key was used already.
    pub(super) submit: Script,
    /// ARGV: queue, owner, lease_until, now, token seed, max (at least 1). Returns the flat
    /// TASK_FIELDS rows of up to `max` tasks, in claim order (none while the queue is paused).
    pub(super) claim_batch: Script,
    /// ARGV: id, token, now, then (queue, payload) pairs. Returns 1, or 0 when stale.
    pub(super) complete: Script,
    /// ARGV: id, token, now, outcome (`error`/`crash`), reason, reason as JSON, retry_at (or
    /// empty). Returns 1, or 0 when stale.
    pub(super) fail: Script,
    /// ARGV: id, token, now, reason as JSON. Returns 1, or 0 when stale.
    pub(super) release: Script,
    /// ARGV: now, then the settlements, each `complete ID TOKEN N` and N (queue, payload)
    /// pairs, `fail` + the ARGV of `fail` or `release` + the ARGV of `release` (without now).
    /// Returns one 1 (applied) or 0 (stale) per settlement. Wake-ups are pushed at the end.
    pub(super) settle: Script,
    /// ARGV: now, queue, owner, lease_until, token seed, max (0: claim nothing), then the
    /// settlements as for `settle`. Returns {`settle`'s reply, `claim_batch`'s reply}; the
    /// claim runs under `pcall`, so its error returns the tasks leased before it, not an error.
    pub(super) settle_and_claim: Script,
    /// ARGV: run_at, now, then (queue, payload) pairs. Returns the new ids in order.
    pub(super) submit_batch: Script,
    /// ARGV: owner. Returns flat TASK_FIELDS rows.
    pub(super) owned_by: Script,
    /// ARGV: now. Returns flat TASK_FIELDS rows of the leases that ended before now.
    pub(super) expired: Script,
    /// ARGV: lease_until, then owners (distinct). Returns how many leases were extended.
    pub(super) renew: Script,
    /// ARGV: queue, now. Returns the six values of `counts`.
    pub(super) counts: Script,
    /// ARGV: now. Returns flat rows: queue, the six values of `counts` and paused (1/0), for
    /// every queue with tasks or paused; forgets the others.
    pub(super) stats: Script,
    /// ARGV: queue (or empty for every queue). Returns flat SUMMARY_FIELDS rows.
    pub(super) failed: Script,
    /// ARGV: now, mode (`ids`, `queue`, `all`), then the ids or the queue. Returns the failed
    /// tasks that became pending, flat: id, queue, id, queue, ...
    pub(super) retry_failed: Script,
    /// ARGV: queue, which (`failed`/`pending`). Returns how many tasks were deleted.
    pub(super) purge: Script,
    /// ARGV: cutoff (ms, zero-padded to 16 digits like the keys). Removes the schedule keys
    /// fired before the cutoff except each schedule's latest (keys sort by schedule, then by
    /// time) and returns how many.
    pub(super) prune_schedule_keys: Script,
    /// ARGV: before (ms), kept per queue, budget. Deletes up to `budget` completed tasks
    /// beyond the cap or completed before `before`; returns how many.
    pub(super) prune_completed: Script,
    /// ARGV: queue, now. Returns {1} when a task is ready; otherwise clears the stale wake-up
    /// tokens and returns {0, earliest delayed run_at or nil}, or {2} when the queue is paused.
    pub(super) probe: Script,
    /// ARGV: queue, pause (`1`/`0`), now. Returns 1 when the state changed; a resume pushes
    /// one wake-up token per ready task (at least one).
    pub(super) set_paused: Script,
    /// ARGV: id. Returns one SUMMARY_FIELDS row (all nil when there is no such task).
    pub(super) task: Script,
    /// ARGV: mode (`list`/`count`), now, queue (or empty), state (`ready`, `delayed`,
    /// `running`, `failed` or empty), has_text (`1`/`0`), text, text as an id (or empty),
    /// since, until (ms or empty), after (0: from the start), limit. Returns flat
    /// SUMMARY_FIELDS rows by id (`list`) or how many match (`count`).
    pub(super) list: Script,
    /// ARGV: ids. Deletes the failed ones; returns how many.
    pub(super) purge_failed: Script,
    /// ARGV: id, record (JSON), expires_at, now. Returns 1 (0 when already expired).
    pub(super) beat: Script,
    /// ARGV: id.
    pub(super) forget_master: Script,
    /// ARGV: now. Returns the JSON records of the masters that have not expired.
    pub(super) masters: Script,
    /// ARGV: id, reason, reason as JSON, now. Returns 1 when the pending task became failed
    /// (its attempt recorded as cancelled), 0 when it was not pending.
    pub(super) cancel_pending: Script,
    /// ARGV: the oldest minute kept, the rows' time to live (seconds), the recording's name,
    /// then per row: minute, queue, N, and N (field, amount) pairs to add.
    pub(super) history_add: Script,
    /// ARGV: since (minute), queue (or empty for every queue). Returns flat rows: queue,
    /// minute, N, then N (field, value) pairs.
    pub(super) history: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    // The newlines around the files' text are part of every script (and so of its SHA1, the
    // name `EVALSHA` knows it by): they were there when the Lua lived in Rust strings.
    let script = |body: &str| Script::new(&format!("\n{PRELUDE}\n\n{body}"));
    Scripts {
        submit: script(include_str!("lua/submit.lua")),
        claim_batch: script(include_str!("lua/claim_batch.lua")),
        complete: script(include_str!("lua/complete.lua")),
        fail: script(include_str!("lua/fail.lua")),
        release: script(include_str!("lua/release.lua")),
        settle: script(include_str!("lua/settle.lua")),
        settle_and_claim: script(include_str!("lua/settle_and_claim.lua")),
        submit_batch: script(include_str!("lua/submit_batch.lua")),
        owned_by: script(include_str!("lua/owned_by.lua")),
        expired: script(include_str!("lua/expired.lua")),
        renew: script(include_str!("lua/renew.lua")),
        counts: script(include_str!("lua/counts.lua")),
        stats: script(include_str!("lua/stats.lua")),
        failed: script(include_str!("lua/failed.lua")),
        retry_failed: script(include_str!("lua/retry_failed.lua")),
        purge: script(include_str!("lua/purge.lua")),
        prune_schedule_keys: script(include_str!("lua/prune_schedule_keys.lua")),
        prune_completed: script(include_str!("lua/prune_completed.lua")),
        probe: script(include_str!("lua/probe.lua")),
        set_paused: script(include_str!("lua/set_paused.lua")),
        task: script(include_str!("lua/task.lua")),
        list: script(include_str!("lua/list.lua")),
        purge_failed: script(include_str!("lua/purge_failed.lua")),
        beat: script(include_str!("lua/beat.lua")),
        forget_master: script(include_str!("lua/forget_master.lua")),
        masters: script(include_str!("lua/masters.lua")),
        cancel_pending: script(include_str!("lua/cancel_pending.lua")),
        history_add: script(include_str!("lua/history_add.lua")),
        history: script(include_str!("lua/history.lua")),
    }
});

impl RedisTransport {
    /// Run a script with the prefix and `args`. `idempotent` ones (reads) are sent again once
    /// after the connection dropped.
    pub(super) async fn eval<T: FromRedisValue>(
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
}
