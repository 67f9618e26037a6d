//! The PostgreSQL transport (`postgresql://`, `postgres://`, `pgsql://`, or `pgsql:DBNAME` for
//! a local server): one database shared by the workers of many hosts.
//!
//! # URIs
//!
//! `postgresql://[USER[:PASSWORD]@][HOST][:PORT][/DBNAME][?PARAMS]` (also `postgres://` and
//! `pgsql://`), or `pgsql:DBNAME[?PARAMS]`. Omitted parts come from `PGHOST` (else
//! `127.0.0.1`), `PGPORT` (else 5432), `PGUSER` (else `postgres`), `PGPASSWORD` and
//! `PGDATABASE` (else the user name), like libpq. Parameters: `schema` (default `asynctask`),
//! `sslmode`, `sslrootcert`, `sslcert` + `sslkey` (below), `application_name` (default `rex`),
//! `connect_timeout` (seconds, default 10).
//!
//! # TLS
//!
//! `sslmode` means what it means to libpq (default `prefer`, or `PGSSLMODE`): `disable` never
//! encrypts; `allow`/`prefer` encrypt when the server offers it, checking nothing; `require`
//! insists on TLS, checking nothing unless a root certificate is given, then the chain;
//! `verify-ca` checks the chain; `verify-full` checks the chain and that the certificate names
//! the host. `sslrootcert` (or `PGSSLROOTCERT`) is a PEM file of the roots to trust (instead
//! of the system's); `sslcert` + `sslkey` a client certificate and its PKCS#8 key, both PEM.
//!
//! # Layout
//!
//! Everything lives in its own schema (`asynctask`): `tasks` (like SQLite's, times as
//! `timestamptz`, the payload as `json` text — kept exactly as written — and the attempt
//! history as a `jsonb` array; a failed task's `run_at` is the time it failed),
//! `idempotency_keys`, `paused_queues` (one row per paused queue), `masters` (each master's
//! heartbeat record as JSON text, with its expiry), and `schema_version`. The schema is created
//! or migrated on first use ([`MIGRATIONS`](schema::MIGRATIONS), all in one transaction),
//! under a transaction-level advisory lock so that many processes starting at once do not race.
//!
//! # Concurrency
//!
//! A claim is one `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`: no
//! queue-wide lock, so consumers of one queue claim in parallel, each skipping the rows the
//! others are taking. The earliest due task goes first (`run_at`, then `id`), read from the
//! first entry of a partial index made for that order. Every claim statement also checks that
//! the queue is not in `paused_queues` (a one-time primary-key lookup before the scan). Settlements are fenced by
//! `lease_token` in their `WHERE` clause, so a stale lease matches no row. Each transport holds
//! a small connection pool (deadpool).
//!
//! # Batches
//!
//! Each batch operation is one statement, its tasks bound as arrays (`unnest`): `claim_batch`
//! (the claim with `LIMIT n`), `submit_batch` (one multi-row `INSERT` and its notifications),
//! and `settle` / `settle_and_claim` — deletions, follow-up submits of the applied completions
//! only, failures, releases, notifications and the claim as the parts (CTEs) of one statement,
//! so a batch is applied at once or not at all. A consumer's steady state — completions
//! without submits, and the next claim — is a leaner statement of its own that commits without
//! waiting for the WAL flush (see [`Transport::settle_and_claim`] below). The tasks a batch
//! submits, retries now or releases are not claimed by the same statement (it sees the table as
//! it was when it started). A batch that settles one task twice is applied one settlement at a
//! time.
//!
//! # Wake-ups
//!
//! Every change that makes a task ready (submit, completion submits, retry, release,
//! `retry_failed`, resuming a paused queue) also runs `pg_notify(CHANNEL, queue)`, delivered at
//! commit. A waiter on a paused queue ignores its ready tasks and waits for a notification. One dedicated
//! connection per transport `LISTEN`s on the channel (started by the first [`Transport::wait`])
//! and fans the notifications out to the waiters in this process. When that connection is lost
//! it is re-established with bounded exponential backoff, and every waiter is woken once it is
//! listening again (notifications may have been missed meanwhile). An idle waiter costs one query
//! when it starts waiting (is anything ready, or when will a delayed task be?) and nothing
//! afterwards.
//!
//! # Upkeep
//!
//! Every task leaves dead row versions behind. With the server's autovacuum off,
//! [`Transport::maintain`] (run by each master every few seconds) vacuums the tables once
//! enough rows are dead, one process at a time.
//!
//! # Failures
//!
//! A lost or refused connection is [`TransportError::Unavailable`] (retryable): the pool drops
//! broken connections and opens new ones on the next operation, so the same transport works
//! again once the server is back. A connection that hangs instead (its packets silently
//! dropped) is noticed within a bounded time: every operation — getting a connection, its
//! statements — has 10 s to complete, after which it fails as unavailable and the idle
//! connections are dropped with the one it used (a reply lost for good leaves a connection
//! out of step); the schema check is bounded the same way, a migration is not, and what reads
//! or changes a whole table (listings, stats, retries, purges: 10 minutes) and the upkeep's
//! `VACUUM` (30 minutes) get longer. TCP keepalives (a probe after 5 s of
//! silence, then every 2 s, 3 unanswered drop the connection) and `TCP_USER_TIMEOUT` (10 s of
//! unacknowledged data) catch a dead server or route on idle and busy connections, and the
//! listening connection is pinged every 5 s (an empty query, 10 s to answer).
//!
//! # Files
//!
//! * `mod.rs` — this overview, [`PgsqlTransport`] and its [`Transport`] implementation, which
//!   delegates to the files below.
//! * `uri.rs` — URI parsing (libpq's environment variables, `sslmode`) and password redaction.
//! * `connection.rs` — the pool, connections to a migrated schema, error mapping.
//! * `tls.rs` — the TLS connector, whose OpenSSL context is built when a connection first
//!   uses TLS.
//! * `schema.rs` — the migrations and the code that applies them.
//! * `sql.rs` — every statement's text, loaded from `sql/queries/*.sql` and
//!   `sql/migrations/NNN_*.sql` (`{schema}` there stands for the quoted schema name).
//! * `rows.rs` — values between Rust and the columns: times, tokens, payloads, row decoding.
//! * `queue.rs` — submit, claim and settling leases, one task or a batch.
//! * `claim_from.rs` — where a claim starts: after the previous full window, not at the head
//!   of the claim order (whose dead index entries it would walk).
//! * `operator.rs` — counts, stats, failed tasks, retry, purge, schedule keys, vacuum.
//! * `console.rs` — pause flags, task lookup, filtered listings and counts, purging selected
//!   failed tasks, masters' heartbeats.
//! * `completed.rs` — completed tasks (kept in a table of their own) pruned by age and cap.
//! * `history.rs` — throughput history: per-minute counters summed by an upsert.
//! * `wake.rs` — `wait` and the listening connection.
//! * `events.rs` — lifecycle events: `NOTIFY` on the schema's `rex.events.<schema>` channel,
//!   a dedicated `LISTEN`ing connection per follower, which `followed` finds by its
//!   `application_name` in `pg_stat_activity`.

mod claim_from;
mod completed;
mod connection;
mod console;
mod events;
mod history;
mod operator;
mod queue;
mod rows;
mod schema;
mod sql;
mod tls;
mod uri;
mod wake;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::OnceCell;

use crate::{
    EventFeed, Failure, HistoryRow, Lease, MasterRecord, Payload, PurgeWhich, QueueCounts,
    QueueStats, Result, RetriedTask, Selector, Settlement, Submit, SubmitOptions, Task, TaskEvent,
    TaskFilter, TaskId, TaskSummary, Transport,
};
use sql::Sql;
use uri::parse_uri;
use wake::Listener;

const TRANSPORT: &str = "PostgreSQL";
/// First argument of `pg_advisory_xact_lock(int, int)`: "rex" plus 1, to stay clear of other
/// applications' locks. The second argument is a hash of the schema name.
const MIGRATION_LOCK_CLASS: i32 = 0x7265_7801;
/// First argument of `pg_try_advisory_lock(int, int)` while one process vacuums a schema.
const VACUUM_LOCK_CLASS: i32 = MIGRATION_LOCK_CLASS + 1;
/// Leases and delays are capped so that every time stays within what `timestamptz` holds.
const MAX_DELAY: Duration = Duration::from_secs(1_000 * 365 * 24 * 3600);

/// A transport backed by one PostgreSQL database (one schema of it).
pub struct PgsqlTransport {
    /// The URI without its password, as shown by `describe` and in errors.
    uri: String,
    schema: String,
    channel: String,
    sql: Sql,
    pool: Pool,
    migrated: OnceCell<()>,
    listener: Listener,
    /// Where lifecycle events travel (`events.rs`).
    events: events::Channel,
    /// Where this process's next claim of each queue starts (`claim_from.rs`).
    claim_from: claim_from::ClaimFrom,
}

impl PgsqlTransport {
    /// Parse `uri` and set up the pool. Nothing connects yet: the first operation does (and
    /// creates or migrates the schema).
    pub fn open(uri: &str) -> Result<Self> {
        let target = parse_uri(uri, &|name| std::env::var(name).ok())?;
        let tls = tls::LazyTls::new(target.tls);
        let pool = connection::pool(target.config.clone(), tls.clone(), uri)?;
        let channel = format!("rex_{}", target.schema);
        Ok(PgsqlTransport {
            uri: target.described,
            sql: Sql::new(&target.schema),
            events: events::Channel::new(target.config.clone(), tls.clone(), &target.schema),
            listener: Listener::new(target.config, tls, &channel),
            schema: target.schema,
            channel,
            pool,
            migrated: OnceCell::new(),
            claim_from: claim_from::ClaimFrom::default(),
        })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

/// Open the transport named by `uri`.
/// Parse a URI as [`open_uri`] would, without connecting (no environment defaults).
pub fn check_uri(uri: &str) -> Result<()> {
    uri::parse_uri(uri, &|_| None).map(drop)
}

pub fn open_uri(uri: &str) -> Result<Arc<dyn Transport>> {
    Ok(Arc::new(PgsqlTransport::open(uri)?))
}

/// Each method is implemented in the file of its job (`queue.rs`, `operator.rs`, `console.rs`,
/// `events.rs`, `wake.rs`).
#[async_trait::async_trait]
impl Transport for PgsqlTransport {
    fn describe(&self) -> String {
        format!("{TRANSPORT}({}, schema {})", self.uri, self.schema)
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        PgsqlTransport::submit(self, queue, payload, opts).await
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        PgsqlTransport::claim(self, queue, owner, lease).await
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        PgsqlTransport::complete(self, lease, submits).await
    }

    async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        PgsqlTransport::claim_batch(self, queue, owner, lease, max).await
    }

    async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        PgsqlTransport::settle(self, batch).await
    }

    /// One statement (one round trip) per batch for a busy consumer. When the batch is only
    /// completions without follow-up submits, the statement commits with
    /// `synchronous_commit = off`: if the server crashes right after, what can be lost is these
    /// acknowledgements and claims — the tasks then run again (at-least-once holds) — never a
    /// submitted task, failure or release, whose statement commits synchronously.
    async fn settle_and_claim(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease_for: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        PgsqlTransport::settle_and_claim(self, batch, queue, owner, lease_for, max).await
    }

    async fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        PgsqlTransport::submit_batch(self, tasks, run_at).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        PgsqlTransport::fail(self, lease, failure, retry_at).await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        PgsqlTransport::release(self, lease, reason).await
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        PgsqlTransport::owned_by(self, owner).await
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        PgsqlTransport::expired(self, now).await
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        PgsqlTransport::renew(self, owners, lease).await
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        PgsqlTransport::counts(self, queue).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        PgsqlTransport::stats(self).await
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        PgsqlTransport::failed(self, queue).await
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        PgsqlTransport::retry_failed(self, selector).await
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        PgsqlTransport::purge(self, queue, which).await
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        PgsqlTransport::last_fire(self, schedule).await
    }

    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        PgsqlTransport::prune_schedule_keys(self, before).await
    }

    fn keeps_completed(&self) -> bool {
        true
    }

    async fn prune_completed(&self, before: SystemTime, keep_per_queue: u64) -> Result<u64> {
        PgsqlTransport::prune_completed(self, before, keep_per_queue).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        PgsqlTransport::set_paused(self, queue, paused).await
    }

    async fn paused(&self) -> Result<Vec<String>> {
        PgsqlTransport::paused(self).await
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        PgsqlTransport::task(self, id).await
    }

    async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        PgsqlTransport::list(self, filter, after, limit).await
    }

    async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        PgsqlTransport::count(self, filter).await
    }

    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        PgsqlTransport::purge_failed(self, ids).await
    }

    async fn beat(&self, record: &MasterRecord) -> Result<()> {
        PgsqlTransport::beat(self, record).await
    }

    async fn forget_master(&self, id: &str) -> Result<()> {
        PgsqlTransport::forget_master(self, id).await
    }

    async fn masters(&self) -> Result<Vec<MasterRecord>> {
        PgsqlTransport::masters(self).await
    }

    async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        PgsqlTransport::cancel_pending(self, id, reason).await
    }

    async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        PgsqlTransport::request_cancel(self, id, attempt).await
    }

    async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        PgsqlTransport::cancel_requests(self).await
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        PgsqlTransport::set_schedule_paused(self, id, paused).await
    }

    async fn paused_schedules(&self) -> Result<Vec<String>> {
        PgsqlTransport::paused_schedules(self).await
    }

    async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        PgsqlTransport::record_history(self, recording, rows).await
    }

    async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        PgsqlTransport::history(self, queue, since).await
    }

    /// Every task leaves two or three dead row versions behind (claim, settle), and a claim
    /// scans past the dead ones of its index: without vacuum a busy queue slows down by an
    /// order of magnitude within a few hundred thousand tasks. Autovacuum normally takes care
    /// of it; when the server has it off, the masters vacuum the two tables themselves, one
    /// at a time (an advisory lock), once enough rows are dead.
    async fn maintain(&self) -> Result<Option<String>> {
        PgsqlTransport::maintain(self).await
    }

    async fn publish_events(&self, events: &[TaskEvent]) -> Result<()> {
        self.publish_now(events).await
    }

    async fn followed(&self) -> Result<bool> {
        self.followed_now().await
    }

    async fn follow_events(&self) -> Result<EventFeed> {
        self.follow_now().await
    }

    /// Returns when a notification for `queue` arrives (from any process; resuming it
    /// notifies), when the earliest delayed task of `queue` becomes ready (never while it is
    /// paused), when the listening connection (re)connects, or
    /// at `timeout`. Errors other than an invalid queue name are not reported here (the next
    /// operation reports them): while the server is unreachable it simply waits, until the
    /// listener is back or the timeout.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        PgsqlTransport::wait(self, queue, timeout).await
    }
}
