//! Task transports for `rex.asynctask`.
//!
//! # Layout
//!
//! * [`Transport`] (this file) — the delivery contract every backend implements; its errors,
//!   [`TransportError`], are in `error.rs`.
//! * [`task`] — the data that crosses the contract: payloads, claimed tasks, leases, failures,
//!   queue statistics; plus queue-name and payload validation shared by all backends.
//! * [`sqlite`] — the embedded default (`sqlite:PATH`), WAL mode, safe for many processes;
//!   its private `wake` module carries its cross-process wake-ups.
//! * [`memory`] — in-process only (`memory:`), for library use and tests.
//! * `pgsql` — PostgreSQL (`postgresql://`, `pgsql:`), for many hosts (cargo feature `pgsql`).
//! * `redis` — Redis (`redis://`), for many hosts (cargo feature `redis`).
//! * `amqp` — RabbitMQ (`amqp://`), for many hosts; leases are held by the broker (cargo
//!   feature `amqp`).
//! * [`console`] — what operators see beyond the delivery path: the filter of listings and bulk
//!   actions, the heartbeat record masters publish.
//! * [`events`] — the live feed of lifecycle events (submitted, started, succeeded...) and
//!   [`events::tap`], the wrapper that publishes them for the calls made through it.
//! * [`history`] — per-minute counters of outcomes, run times and waits, per queue, that
//!   masters add up and record (the console's charts and `/metrics` counters).
//! * [`batch`] — the batch operations done one task at a time: the trait's defaults, and the
//!   fallback of backends that batch only some cases.
//! * [`open`] — URI → transport.
//!
//! Each backend is a directory with one file per job (URI, connection, layout, claim/settle,
//! operator listings, wake-ups; SQL and Lua in files of their own). What they share exists
//! once: `uri` (redaction, percent-coding, scrubbing secrets), [`hash`], `tls` (certificates
//! and verification for the network backends), `runtime_cache` (the connection state Redis
//! and RabbitMQ keep per Tokio runtime, and which runtime's goes when there are too many).
//!
//! The one test suite every transport must pass lives in its own crate,
//! `rex-transport-conformance` (`transports/conformance/`), a dev-dependency of this one.
//!
//! # Delivery contract (at-least-once)
//!
//! A task is `pending` until a consumer [`claim`](Transport::claim)s it; it is then `running`,
//! leased to an *owner* (a string naming the worker process) until `lease_until`, with a
//! *lease token* that is incremented on every claim. Every settlement — [`complete`],
//! [`fail`], [`release`] — names the lease token and is a no-op returning `false` when the
//! token is stale (the task was reclaimed meanwhile), so a late finisher can never overwrite a
//! newer attempt. A task is never deleted before it is completed: a task whose attempts are
//! used up is kept as `failed` with its error and its whole attempt history until an operator
//! retries or purges it. Retry *policy* (how many attempts, which delay) is the caller's; the
//! transport only records outcomes and honours `retry_at`.
//!
//! [`complete`]: Transport::complete
//! [`fail`]: Transport::fail
//! [`release`]: Transport::release

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod batch;
pub mod console;
pub mod events;
pub mod hash;
pub mod history;
pub mod memory;
#[cfg(feature = "pgsql")]
pub mod pgsql;
#[cfg(feature = "redis")]
pub mod redis;
// Used by the Redis and RabbitMQ backends only (PostgreSQL has a connection pool): gated on
// them rather than on `network`, so that a pgsql-only build has no unused code.
#[cfg(any(feature = "redis", feature = "amqp"))]
#[cfg_attr(not(feature = "amqp"), allow(dead_code))] // Redis never drains its cache
mod runtime_cache;
mod schedule;
pub mod sqlite;
pub mod task;
// Each network backend uses a part of the TLS settings; a build with only some of them
// leaves the rest unused.
mod error;
#[cfg(feature = "network")]
#[cfg_attr(
    not(all(feature = "pgsql", feature = "redis", feature = "amqp")),
    allow(dead_code)
)]
mod tls;
mod uri;
mod validate;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use error::{Result, TransportError};
pub use events::{EventFeed, EventKind, TaskEvent};
pub use uri::redact_uri;

pub use console::{ChildRecord, ListState, MasterRecord, QueueTotals, TaskFilter};
pub use history::{Counters, Histogram, HistoryRow};

pub use task::{
    Attempt, Failure, FailureKind, Lease, Outcome, Payload, QueueCounts, QueueStats, Settlement,
    Submit, SubmitOptions, Task, TaskId, TaskState, TaskSummary, manual_run_key, normalize_payload,
    schedule_key, schedule_key_prefix, schedule_key_time, validate_queue_name,
    validate_schedule_id,
};
pub use task::{
    EXCERPT, MAX_PAYLOAD_DEPTH, MAX_QUEUE_NAME, RESERVED_KEY, check_payload, check_size, excerpt,
    has_reserved_key,
};

/// Which tasks [`Transport::retry_failed`] moves back to `pending`.
#[derive(Clone, Debug)]
pub enum Selector {
    Ids(Vec<TaskId>),
    Queue(String),
    All,
}

/// A failed task [`Transport::retry_failed`] made pending again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetriedTask {
    pub id: TaskId,
    pub queue: String,
}

/// Which tasks [`Transport::purge`] deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeWhich {
    Failed,
    Pending,
}

/// How often a master calls [`Transport::maintain`].
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(10);

/// The delivery contract. Implementations must be cheap to share (`Arc<dyn Transport>`) and
/// safe to use from several processes at once when their backend is shared.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// A display form of the URI with any password replaced by `***`.
    fn describe(&self) -> String;

    /// Whether tasks submitted here can be seen by other processes (false for `memory:`).
    fn is_shared(&self) -> bool {
        true
    }

    /// True when a claim is held by the claiming connection (RabbitMQ): then
    /// [`owned_by`](Transport::owned_by), [`expired`](Transport::expired) and
    /// [`renew`](Transport::renew) only see the calling process's claims, and a lost holder's
    /// task is returned by the broker: its next claim hands the lost attempt out again with
    /// [`Task::lost`] set, for the claimer to settle as a crash.
    fn leases_held_by_broker(&self) -> bool {
        false
    }

    /// Whether completed tasks are kept (as `done`, with their result and history) for
    /// [`task`](Transport::task) and [`list`](Transport::list) to show until
    /// [`prune_completed`](Transport::prune_completed) removes them. RabbitMQ acknowledges
    /// (deletes) a completed message and keeps nothing.
    fn keeps_completed(&self) -> bool {
        false
    }

    /// Whether its connections must be driven all the time (protocol heartbeats), not only
    /// while the caller awaits an operation. A caller that blocks its thread for long (a
    /// child running a payload) then gives its runtime a thread of its own; otherwise the
    /// server drops the connection of a payload running longer than two heartbeats.
    fn needs_constant_io(&self) -> bool {
        false
    }

    /// Enqueue a task. Returns its id, or `None` when `opts.idempotency_key` was already used
    /// (the task was not enqueued a second time).
    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>>;

    /// Claim the next ready task of `queue` (one whose `run_at` has passed), leasing it to
    /// `owner` for `lease`. Increments the attempt count and the lease token. `None` when
    /// nothing is ready.
    ///
    /// **Claim order, on every transport:** the earliest due time (`run_at`: the submit time,
    /// a delayed submit's time, a retry's time) first, then submission order (task id) among
    /// equal due times. RabbitMQ can only hand tasks out in the order they became ready: the
    /// same order, except that a task submitted with a `run_at` already past goes behind the
    /// tasks ready before it (see `docs/transports.md`).
    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>>;

    /// Mark the attempt done and, in the same transaction where the backend allows it, enqueue
    /// `submits`. `false` if the lease is stale (nothing was changed and nothing was
    /// submitted). Where [`keeps_completed`](Transport::keeps_completed), the task is kept as
    /// `done` (its `run_at` the time it completed) until
    /// [`prune_completed`](Transport::prune_completed) removes it; else it is deleted.
    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool>;

    /// Record a failed attempt. With `retry_at` the task goes back to `pending` and becomes
    /// ready at that time; without it the task becomes `failed` and is kept. `false` if stale.
    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool>;

    /// Return a claimed task to `pending`, without using up an attempt (the attempt count is
    /// decremented again; the history records the release). It keeps its place in the claim
    /// order (its due time), except on RabbitMQ, which queues it again at the end. `false` if
    /// stale.
    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool>;

    /// Claim up to `max` (at least one) ready tasks of `queue` for `owner`, in claim order,
    /// in one round trip where the backend allows. Each is leased as by
    /// [`claim`](Transport::claim); empty when nothing is ready.
    async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        batch::claim_each(self, queue, owner, lease, max).await
    }

    /// Apply `batch` in order, one result per settlement: `false` when its lease was stale
    /// (nothing of it was applied; a stale token rejects that settlement only). Each
    /// settlement is atomic with its submits; backends that can apply the whole batch in one
    /// transaction do.
    ///
    /// The submits of every completion are validated before anything is applied (an invalid
    /// queue name fails the call with nothing changed). A retryable error may leave a prefix of
    /// the batch applied: settling the same batch again is safe, as what was applied comes
    /// back `false` (its lease is no longer current).
    async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        batch::settle_each(self, batch).await
    }

    /// [`settle`](Transport::settle) `batch`, then [`claim_batch`](Transport::claim_batch) up
    /// to `max` tasks of `queue` for `owner` (none when `max` is 0): a consumer's steady state,
    /// one round trip (one transaction) where the backend allows. The claim part never makes
    /// the call fail: on a claim error no task is returned, and the caller's next claim reports
    /// the error. Tasks that `batch` itself makes ready (releases, retries due now) may be left
    /// for the next claim (PostgreSQL's single statement does not see them).
    async fn settle_and_claim(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        batch::settle_then_claim(self, batch, queue, owner, lease, max).await
    }

    /// Enqueue `tasks` (each names its queue), all ready at `run_at` (now when `None`), in one
    /// transaction where the backend allows, else pipelined. Ids in the order given. Every
    /// queue name is validated before anything is enqueued.
    async fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        batch::submit_each(self, tasks, run_at).await
    }

    /// Tasks currently `running` under `owner` (used to settle a dead worker's tasks at once).
    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>>;

    /// Tasks `running` whose lease ended before `now` (owner presumed dead).
    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>>;

    /// Extend the leases of every task running under one of `owners` to `now + lease`.
    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64>;

    /// Counts for one queue (what `--halt-when-empty` needs).
    async fn counts(&self, queue: &str) -> Result<QueueCounts>;

    /// Statistics for every queue that has tasks in any state or is paused, sorted by queue
    /// name.
    async fn stats(&self) -> Result<Vec<QueueStats>>;

    /// `failed` tasks, oldest first, optionally of one queue.
    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>>;

    /// Move `failed` tasks back to `pending` (ready now, attempt counters reset, history kept).
    /// Returns the tasks moved (for their `retried` events), in no particular order.
    async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>>;

    /// Delete tasks of `queue` in the given state. Returns how many were deleted.
    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64>;

    /// The latest fire time recorded for a schedule: the greatest `at` of the idempotency keys
    /// [`schedule_key`]`(schedule, at)` used so far, or `None`.
    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>>;

    /// Forget the idempotency keys of schedule fires before `before`, except the latest key of
    /// each schedule (which [`last_fire`](Transport::last_fire) reads), and the keys of
    /// operators' runs ([`manual_run_key`]) used before `before`. Returns how many were
    /// deleted. A scheduler calls this now and then so that keys do not pile up forever.
    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64>;

    /// Pause (`true`) or resume (`false`) `queue`. A paused queue still accepts submits and
    /// settlements; [`claim`](Transport::claim), [`claim_batch`](Transport::claim_batch) and
    /// the claim of [`settle_and_claim`](Transport::settle_and_claim) hand out none of its
    /// tasks until it is resumed, and [`wait`](Transport::wait) on it returns only when it is
    /// resumed (or at its timeout): resuming wakes its waiters. A queue need not have tasks to
    /// be paused. Returns whether the state changed.
    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        let _ = (queue, paused);
        Err(unsupported(self, "pausing queues"))
    }

    /// The paused queues, sorted by name.
    async fn paused(&self) -> Result<Vec<String>> {
        Err(unsupported(self, "pausing queues"))
    }

    /// Cancel the pending task `id` (ready or delayed): it becomes `failed` at once, its
    /// history recording an attempt `cancelled` with `reason` (which becomes its last error);
    /// it can be retried or purged like any failed task. `false` when it is not pending.
    async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        let _ = (id, reason);
        Err(unsupported(self, "cancelling tasks"))
    }

    /// Ask whoever runs attempt `attempt` of task `id` to stop it: its master, which reads
    /// [`cancel_requests`](Transport::cancel_requests) every few seconds, kills the worker and
    /// records the attempt as cancelled. A request is kept [`console::CANCEL_REQUEST_KEPT`]
    /// (it names one attempt, so a later attempt of the same task is not touched).
    async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        let _ = (id, attempt);
        Err(unsupported(self, "cancelling tasks"))
    }

    /// The cancellations asked for by [`request_cancel`](Transport::request_cancel) and not
    /// expired: (task id, attempt).
    async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        Err(unsupported(self, "cancelling tasks"))
    }

    /// Pause (`true`) or resume (`false`) the schedule `id` ([`validate_schedule_id`]): a
    /// scheduler enqueues no fire of a paused schedule (they are skipped, not caught up on
    /// resume). Returns whether the state changed.
    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        let _ = (id, paused);
        Err(unsupported(self, "pausing schedules"))
    }

    /// The ids of the paused schedules, sorted.
    async fn paused_schedules(&self) -> Result<Vec<String>> {
        Err(unsupported(self, "pausing schedules"))
    }

    /// Whether the schedule `id` is paused: what a scheduler asks before it enqueues a fire.
    /// A backend whose listing may miss a flag while another process reads it (RabbitMQ)
    /// answers this from a flag of its own.
    async fn schedule_paused(&self, id: &str) -> Result<bool> {
        Ok(self.paused_schedules().await?.iter().any(|p| p == id))
    }

    /// One task, in whatever state it is kept in, with its history; `None` when the
    /// transport keeps no such task (completed tasks are deleted).
    async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        let _ = id;
        Err(unsupported(self, "looking tasks up"))
    }

    /// The tasks `filter` matches ([`TaskFilter::matches`] is the reference), by id, those
    /// after `after` only (keyset pagination: pass the last id of the previous page), at most
    /// `limit` (capped at [`console::MAX_PAGE`]).
    async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        let _ = (filter, after, limit);
        Err(unsupported(self, "listing tasks"))
    }

    /// How many tasks `filter` matches (the count a bulk action confirms before it runs).
    async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        let _ = filter;
        Err(unsupported(self, "counting tasks"))
    }

    /// Delete those of `ids` that are `failed` (the others are left alone). Returns how many
    /// were deleted. A bulk action over a [`TaskFilter`] lists the matching ids first
    /// ([`console::matching_ids`]).
    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        let _ = ids;
        Err(unsupported(self, "purging selected tasks"))
    }

    /// Publish `record` (a master's heartbeat), replacing the previous one of the same id; it
    /// is listed by [`masters`](Transport::masters) until `record.expires_at`.
    async fn beat(&self, record: &MasterRecord) -> Result<()> {
        let _ = record;
        Err(unsupported(self, "master heartbeats"))
    }

    /// Withdraw a master's record at once (its clean exit).
    async fn forget_master(&self, id: &str) -> Result<()> {
        let _ = id;
        Err(unsupported(self, "master heartbeats"))
    }

    /// The records of masters that have not expired, by id.
    async fn masters(&self) -> Result<Vec<MasterRecord>> {
        Err(unsupported(self, "master heartbeats"))
    }

    /// Add `rows` (per-minute counters a master saw, see [`history`]) to what is recorded:
    /// the counters of a queue and minute already recorded, by this or another process, are
    /// summed. Rows older than [`history::HISTORY_KEPT`] are dropped by upkeep.
    ///
    /// `recording` names this call, unique to its caller: a recording of a name already
    /// recorded (within [`history::HISTORY_KEPT`]) adds nothing, so that a caller who got an
    /// error after the backend applied the recording (a lost reply) may repeat it safely.
    async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        let _ = (recording, rows);
        Err(unsupported(self, "throughput history"))
    }

    /// The recorded rows of `queue` (every queue with `None`) from the minute `since` on,
    /// sorted by queue, then minute; one row per queue and minute.
    async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        let _ = (queue, since);
        Err(unsupported(self, "throughput history"))
    }

    /// How often a master calls [`record_history`](Transport::record_history): each call may
    /// cost the backend a row or a message per queue.
    fn history_interval(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// Delete the completed tasks that finished before `before`, and those beyond the newest
    /// `keep_per_queue` of each queue. Returns how many were deleted. Masters call it with
    /// their upkeep, in bounded chunks so that no single transaction holds the store long.
    async fn prune_completed(&self, before: SystemTime, keep_per_queue: u64) -> Result<u64> {
        let _ = (before, keep_per_queue);
        Ok(0)
    }

    /// Publish lifecycle events to the processes following them (see [`events`]). Called by
    /// the [`events::tap`] wrapper, only while [`followed`](Transport::followed) says someone
    /// follows; best effort (a caller never fails its own work for it).
    async fn publish_events(&self, events: &[TaskEvent]) -> Result<()> {
        let _ = events;
        Err(unsupported(self, "following events"))
    }

    /// Whether any process follows the events now. Cheap: every publisher asks it at most
    /// every [`events::FOLLOW_CHECK`].
    async fn followed(&self) -> Result<bool> {
        Ok(false)
    }

    /// Follow the events every process using this backend publishes from now on. Returns once
    /// subscribed: from then on [`followed`](Transport::followed) is true everywhere.
    async fn follow_events(&self) -> Result<EventFeed> {
        Err(unsupported(self, "following events"))
    }

    /// Upkeep the backend needs and its server does not do by itself, run in the background
    /// by every master about every [`MAINTENANCE_INTERVAL`]; several processes may call it at
    /// once. Returns what was done, for the log (`None`: nothing was needed).
    async fn maintain(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Wait until a task may have become ready in `queue`, or `timeout` passes. Backends
    /// without notifications simply sleep; spurious wake-ups are allowed.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        let _ = queue;
        tokio::time::sleep(timeout).await;
        Ok(())
    }
}

fn unsupported<T: Transport + ?Sized>(transport: &T, what: &str) -> TransportError {
    TransportError::Unsupported(format!("{} does not support {what}", transport.describe()))
}

/// Open the transport named by `uri`:
/// * `sqlite:PATH` (relative paths are relative to the current directory),
/// * `memory:` (a fresh in-process store),
/// * `postgresql://`, `redis://`, `amqp://` (see [`pgsql`], [`redis`], [`amqp`]).
pub fn open(uri: &str) -> Result<Arc<dyn Transport>> {
    match backend(uri)? {
        "sqlite" => Ok(Arc::new(sqlite::SqliteTransport::open_uri(uri)?)),
        #[cfg(feature = "pgsql")]
        "pgsql" => pgsql::open_uri(uri),
        #[cfg(feature = "redis")]
        "redis" => redis::open_uri(uri),
        #[cfg(feature = "amqp")]
        "amqp" => amqp::open_uri(uri),
        _ => Ok(Arc::new(memory::MemoryTransport::new())),
    }
}

/// Parse `uri` as [`open`] would, without opening or connecting to anything.
pub fn check_uri(uri: &str) -> Result<()> {
    match backend(uri)? {
        "sqlite" => sqlite::SqliteTransport::path_of(uri).map(drop),
        #[cfg(feature = "pgsql")]
        "pgsql" => pgsql::check_uri(uri),
        #[cfg(feature = "redis")]
        "redis" => redis::check_uri(uri),
        #[cfg(feature = "amqp")]
        "amqp" => amqp::check_uri(uri),
        _ => Ok(()),
    }
}

/// The backend a URI's scheme names (`sqlite`, `memory`, `pgsql`, `redis`, `amqp`), or why
/// this build cannot use it.
fn backend(uri: &str) -> Result<&'static str> {
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
    let (backend, name, feature) = match scheme {
        "sqlite" => return Ok("sqlite"),
        "memory" => return Ok("memory"),
        "pgsql" | "postgres" | "postgresql" => ("pgsql", "PostgreSQL", cfg!(feature = "pgsql")),
        "redis" | "rediss" | "redis+unix" => ("redis", "Redis", cfg!(feature = "redis")),
        "amqp" | "amqps" => ("amqp", "RabbitMQ", cfg!(feature = "amqp")),
        _ => return Err(TransportError::UnknownTransport(redact_uri(uri))),
    };
    if feature {
        Ok(backend)
    } else {
        Err(not_compiled(uri, name, backend))
    }
}

/// The error for a URI whose backend this build left out.
fn not_compiled(uri: &str, backend: &'static str, feature: &'static str) -> TransportError {
    TransportError::NotCompiled {
        uri: redact_uri(uri),
        backend,
        feature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_left_out_of_the_build_is_named_with_its_feature() {
        let e = not_compiled("postgresql://u:s3cret@db/app", "PostgreSQL", "pgsql");
        assert_eq!(
            e.to_string(),
            "\"postgresql://u:***@db/app\" needs the PostgreSQL transport, which this rex was built without (cargo feature \"pgsql\")"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn unknown_schemes_are_refused_without_their_secrets() {
        let e = open("mysql://u:s3cret@db/app").err().expect("refused");
        assert_eq!(
            e.to_string(),
            "\"mysql://u:***@db/app\" does not resolve to a known transport"
        );
    }
}
