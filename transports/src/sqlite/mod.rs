//! The embedded default transport (`sqlite:PATH`): one SQLite file shared by every worker
//! process of a project.
//!
//! Concurrency: WAL mode lets readers proceed while one writer commits, and the busy timeout
//! makes writers queue up instead of failing. Every write is either one statement (claim, fail,
//! release, renew: atomic on their own) or a `BEGIN IMMEDIATE` transaction, which takes the
//! write lock up front — a deferred transaction that read first could fail with
//! `SQLITE_BUSY_SNAPSHOT` when upgrading, which the busy timeout does not cover. Settlements
//! are fenced by `lease_token` in their `WHERE` clause, so a stale lease matches no row.
//!
//! # Files
//!
//! * `mod.rs` (this file) — [`SqliteTransport`], `sqlite:` URIs, and the [`Transport`] impl,
//!   which hands each method to the file that holds its job.
//! * `connection.rs` — opening the file, connection settings (WAL, busy timeout), the one
//!   connection and its mutex, `BEGIN IMMEDIATE` transactions, rusqlite errors →
//!   [`TransportError`] (busy/locked is retryable).
//! * `schema.rs` — the schema version and the migrations that create or upgrade the schema.
//! * `rows.rs` — rows → [`Task`](crate::Task)s and [`TaskSummary`](crate::TaskSummary)s,
//!   JSON columns, lease tokens as stored.
//! * `queue.rs` — a task's life: submit, claim, complete (and claim), fail, release, and the
//!   leases: owned_by, expired, renew.
//! * `operator.rs` — what operators and schedulers ask: counts, stats, failed, retry_failed,
//!   purge, last_fire, prune_schedule_keys, paused schedules.
//! * `console.rs` — what the operator console asks: pause flags, task lookup, filtered
//!   listings and counts, purging selected failed tasks, masters' heartbeats.
//! * `completed.rs` — completed tasks kept with their results, pruned by age and per-queue
//!   cap.
//! * `history.rs` — throughput history: per-minute counters added up and read back.
//! * `wake.rs` — [`wait`](Transport::wait): in-process notifications, and the host-local wake
//!   bus that carries wake-ups between processes.
//! * `events.rs` — lifecycle events: datagrams to the followers registered on the same bus
//!   mechanism, on a channel of its own.
//! * `sql/` — every SQL statement, one per file, loaded with `include_str!`:
//!   `sql/migrations/NNN_*.sql` (applied in order) and `sql/queries/*.sql`.

mod completed;
mod connection;
mod console;
mod events;
mod history;
mod operator;
mod queue;
mod rows;
mod schema;
mod wake;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use tokio::sync::Notify;

use crate::{
    EventFeed, Failure, HistoryRow, Lease, MasterRecord, Payload, PurgeWhich, QueueCounts,
    QueueStats, Result, RetriedTask, Selector, Settlement, Submit, SubmitOptions, Task, TaskEvent,
    TaskFilter, TaskId, TaskSummary, Transport, TransportError,
};
use wake::WakeBus;

const TRANSPORT: &str = "SQLite";

/// A transport backed by one SQLite database file.
pub struct SqliteTransport {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Wakes `wait` at once for changes made through this instance.
    notify: Notify,
    /// Wakes the waiters of other processes on this host after a commit.
    wake: WakeBus,
    /// Carries lifecycle events to their followers on this host (`events.rs`).
    events: WakeBus,
}

impl SqliteTransport {
    /// Open `sqlite:PATH` (relative to the current directory) or `sqlite:///ABSOLUTE/PATH`.
    pub fn open_uri(uri: &str) -> Result<Self> {
        Self::open(Self::path_of(uri)?)
    }

    /// The path of `sqlite:PATH` or `sqlite:///ABSOLUTE/PATH`.
    pub fn path_of(uri: &str) -> Result<&str> {
        let invalid = |reason: &str| TransportError::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let rest = uri
            .strip_prefix("sqlite:")
            .ok_or_else(|| invalid("expected sqlite:PATH"))?;
        let path = match rest.strip_prefix("//") {
            Some(absolute) if absolute.starts_with('/') => absolute,
            Some(_) => return Err(invalid("expected sqlite:PATH or sqlite:///ABSOLUTE/PATH")),
            None => rest,
        };
        if path.is_empty() {
            return Err(invalid("the path is empty"));
        }
        Ok(path)
    }
}

// Every method but `describe` calls the inherent method of the same name (inherent methods
// win over trait methods) in the file of its job. Those are synchronous: each operation is
// short and runs on the caller's thread, and a missing one fails to compile instead of
// recursing. `wait`, the one that awaits, calls `wait_ready`.
#[async_trait::async_trait]
impl Transport for SqliteTransport {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        self.submit(queue, payload, opts)
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        self.claim(queue, owner, lease)
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        self.complete(lease, submits)
    }

    async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        self.claim_batch(queue, owner, lease, max)
    }

    async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        self.settle(batch)
    }

    /// One IMMEDIATE transaction: the whole batch of settlements, then the next claims.
    async fn settle_and_claim(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease_for: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        self.settle_and_claim(batch, queue, owner, lease_for, max)
    }

    async fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        self.submit_batch(tasks, run_at)
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        self.fail(lease, failure, retry_at)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        self.release(lease, reason)
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        self.owned_by(owner)
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        self.expired(now)
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        self.renew(owners, lease)
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        self.counts(queue)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.stats()
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        self.failed(queue)
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        self.retry_failed(selector)
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        self.purge(queue, which)
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        self.set_paused(queue, paused)
    }

    async fn paused(&self) -> Result<Vec<String>> {
        self.paused()
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        self.task(id)
    }

    async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        self.list(filter, after, limit)
    }

    async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        self.count(filter)
    }

    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        self.purge_failed(ids)
    }

    async fn beat(&self, record: &MasterRecord) -> Result<()> {
        self.beat(record)
    }

    async fn forget_master(&self, id: &str) -> Result<()> {
        self.forget_master(id)
    }

    async fn masters(&self) -> Result<Vec<MasterRecord>> {
        self.masters()
    }

    async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        self.cancel_pending(id, reason)
    }

    async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        self.request_cancel(id, attempt)
    }

    async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        self.cancel_requests()
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        self.set_schedule_paused(id, paused)
    }

    async fn paused_schedules(&self) -> Result<Vec<String>> {
        self.paused_schedules()
    }

    async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        self.record_history(recording, rows)
    }

    async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        self.history(queue, since)
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        self.last_fire(schedule)
    }

    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        self.prune_schedule_keys(before)
    }

    fn keeps_completed(&self) -> bool {
        true
    }

    async fn prune_completed(&self, before: SystemTime, keep_per_queue: u64) -> Result<u64> {
        self.prune_completed(before, keep_per_queue)
    }

    async fn publish_events(&self, events: &[TaskEvent]) -> Result<()> {
        self.publish_now(events);
        Ok(())
    }

    async fn followed(&self) -> Result<bool> {
        Ok(self.followed_now())
    }

    async fn follow_events(&self) -> Result<EventFeed> {
        self.follow_now()
    }

    /// Returns as soon as a task is ready in `queue`: at once for changes made through this
    /// instance, within [`POLL_INTERVAL`](wake::POLL_INTERVAL) for changes made by other
    /// processes.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        self.wait_ready(queue, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/rex.sqlite3");
        let uri = format!("sqlite://{}", nested.display());
        let t = SqliteTransport::open_uri(&uri).unwrap();
        assert_eq!(t.describe(), format!("sqlite:{}", nested.display()));
        assert!(nested.exists(), "parent directories are created");

        for bad in ["sqlite:", "sqlite://", "sqlite://host/x", "postgres://x"] {
            let err = SqliteTransport::open_uri(bad).err().expect(bad);
            assert!(
                matches!(err, TransportError::InvalidUri { .. }),
                "{bad}: {err}"
            );
        }
    }
}
