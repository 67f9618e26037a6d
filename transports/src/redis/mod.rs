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
//! # Key layout
//!
//! Every key is named `P:...`, `P` being the key prefix: one counter of task ids and one of
//! lease tokens, a hash per task, sorted sets and sets indexing the tasks of each queue by
//! state, a wake-up list per queue, the running tasks by lease end and by owner, the queues,
//! the paused queues, the masters' heartbeats, and the used idempotency keys. The table of every key, its type and what it holds is in
//! `scripts.rs`, next to the Lua scripts that use them.
//!
//! Times are milliseconds since the Unix epoch, taken from the client's clock like the SQLite
//! transport does. Completed tasks are deleted.
//!
//! # Atomicity
//!
//! Every operation that changes anything is one Lua script (`EVALSHA`, loaded again by the
//! `redis` crate after a `NOSCRIPT`), so each state transition happens at once or not at all,
//! whichever client runs it: a claim moves the due delayed ids into the ready set, pops the
//! earliest due (then lowest) id, bumps its attempt count and lease token and indexes it as
//! running under its owner in one step, so a claimed task is never only in a client's memory —
//! if the worker dies, the
//! task is still running under its lease and `expired` finds it. Settlements compare the lease
//! token inside their script and change nothing when it is stale; `complete` enqueues its
//! follow-up submits in the same script, and a submit records its idempotency key in the
//! same script as the task. The scripts build key names from the prefix, which is fine on a
//! single Redis server (or a replicated one) but not on Redis Cluster.
//!
//! # Batches
//!
//! Each batch operation is one script, so one round trip whatever its size:
//! `claim_batch` pops up to `max` ready members at once (`ZPOPMIN` with a count: the claim
//! order) and leases them with the counter's next tokens (one `INCRBY`); `settle` applies a
//! list of settlements in order, each fenced by its own token (the same Lua functions as
//! `complete`, `fail` and `release`, so a stale one changes nothing and its submits are not
//! enqueued), one 0/1 each; `settle_and_claim` is `settle` then `claim_batch` in one script
//! (a busy consumer's steady state: one round trip per window of tasks; the claim runs under
//! `pcall`, so it never fails the call); `submit_batch` enqueues every task, ids in the order
//! given. Follow-up submits and queue names are validated in Rust before the script runs.
//! Like every script, a batch runs at once; an error in the middle of one (which the server
//! does not roll back) may leave a prefix of it applied, which the contract allows.
//!
//! Lease tokens come from one counter per prefix, seeded from the clock (milliseconds × 1000)
//! when it is missing, so they still grow on every claim of a task and, unlike per-task
//! counters, are never issued twice even when the server restarts without its data: a worker
//! that held a lease before such a restart cannot settle a newer task that reused the id.
//!
//! # Waiting
//!
//! [`wait`](Transport::wait) blocks on the server instead of polling. Every script that makes
//! a task ready (submit, release, a failure retried now, `retry_failed`) pushes a token to the
//! queue's signal list, and so does one that makes a delayed task the queue's earliest. The
//! batch scripts count those tokens per queue and push them at their end, in one `RPUSH` per
//! queue (at most 256, as the list keeps): the same lists as one push per task, since nothing
//! reads a list while a script runs. A waiter first checks in
//! one script whether a task is ready (then it returns at once); if not, the same script
//! clears the stale tokens (there is nothing ready for them to announce) and reports the
//! earliest delayed `run_at`. It then `BLPOP`s the signal list until a token arrives, its
//! timeout passes or the earliest delayed task becomes due. `BLPOP` blocks its connection, so
//! it runs on connections of its own (kept in a small pool), never on the shared one.
//! Wake-ups may be spurious (a token popped by one waiter whose task another consumer
//! claimed); consumers claim again, as the contract allows.
//!
//! A paused queue (`set_paused`) hands out nothing: every claim script first checks the set
//! of paused queues (one `SISMEMBER`). Its probe reports it paused and clears its tokens, so
//! its waiters block whatever is ready, and a token (a submit meanwhile) only sends them back
//! to the probe; resuming pushes one token per ready task, as their submits did.
//!
//! # Connections and outages
//!
//! Opening a transport does not connect: the first operation does. Commands share one
//! multiplexed [`ConnectionManager`](::redis::aio::ConnectionManager), which reconnects by itself after the connection drops.
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
//!
//! # Files
//!
//! * `mod.rs` — these docs, [`RedisTransport`], [`open_uri`] and the [`Transport`] impl,
//!   which delegates every operation to an inherent method of one of the files below.
//! * `uri.rs` — parsing and redacting URIs, the key prefix, the TLS parameters.
//! * `connection.rs` — the connections of each Tokio runtime (kept in the crate's
//!   `runtime_cache`, shared with the AMQP transport), and `redis` crate errors mapped to
//!   [`TransportError`].
//! * `scripts.rs` — the key layout, the registry of Lua scripts and `eval`, which runs them;
//!   the Lua itself is in `lua/` (`prelude.lua`, shared by all, then one file per script).
//! * `rows.rs` — decoding script replies into tasks, summaries and counts; encoding arguments
//!   (payloads, follow-up submits, a batch of settlements).
//! * `queue.rs` — submit, claim, complete, fail, release, their batches (`claim_batch`,
//!   `settle`, `settle_and_claim`, `submit_batch`), `owned_by`, `expired`, `renew`.
//! * `operator.rs` — counts, stats, failed tasks (list, retry, purge), schedule keys.
//! * `console.rs` — what the operator console needs: pause flags, task lookup, filtered
//!   listings and counts, purging selected failed tasks, master heartbeats.
//! * `history.rs` — throughput history: per-minute hashes added to with `HINCRBY`.
//! * `events.rs` — lifecycle events: `PUBLISH` and `SUBSCRIBE` on `<prefix>:events`.
//! * `wake.rs` — `wait`: the probe script and `BLPOP` on the queue's signal list.

mod connection;
mod console;
mod events;
mod history;
mod operator;
mod queue;
mod rows;
mod scripts;
mod uri;
mod wake;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::redis::{Client, ClientTlsConfig, TlsCertificates};

use self::connection::{MAX_RUNTIMES, RuntimeConnections};
use self::uri::parse_uri;
use crate::runtime_cache::PerRuntime;
use crate::tls::TlsSettings;
use crate::uri::scrub;
use crate::{
    EventFeed, Failure, HistoryRow, Lease, MasterRecord, Payload, PurgeWhich, QueueCounts,
    QueueStats, Result, RetriedTask, Selector, Settlement, Submit, SubmitOptions, Task, TaskEvent,
    TaskFilter, TaskId, TaskSummary, Transport, TransportError,
};

const TRANSPORT: &str = "Redis";

/// Open the transport named by `uri` (connecting lazily, on first use).
/// Parse a URI as [`open_uri`] would, without connecting.
pub fn check_uri(uri: &str) -> Result<()> {
    parse_uri(uri).map(drop)
}

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
    runtimes: PerRuntime<RuntimeConnections>,
}

impl RedisTransport {
    /// Open `redis://...`, `redis+unix://...` (see the module docs). Does not connect.
    pub fn open_uri(uri: &str) -> Result<Self> {
        let scheme = uri.split_once("://").map_or("", |(scheme, _)| scheme);
        if !matches!(scheme, "redis" | "rediss" | "redis+unix") {
            return Err(TransportError::InvalidUri {
                uri: crate::redact_uri(uri),
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
            runtimes: PerRuntime::new(MAX_RUNTIMES),
        })
    }

    /// The key prefix (`rex` unless the URI's `key_prefix` says otherwise).
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }
}

// Every operation but `describe` calls the inherent method of the same name (inherent methods
// win over trait methods), in `queue.rs`, `operator.rs`, `console.rs` or `wake.rs`.
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
        self.submit(queue, payload, opts).await
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        self.claim(queue, owner, lease).await
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        self.complete(lease, submits).await
    }

    /// One script.
    async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        self.claim_batch(queue, owner, lease, max).await
    }

    /// One script for the whole batch.
    async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        self.settle(batch).await
    }

    /// Both in one script, so one round trip per batch in a busy consumer.
    async fn settle_and_claim(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease_for: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        self.settle_and_claim(batch, queue, owner, lease_for, max)
            .await
    }

    /// One script for the whole batch.
    async fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        self.submit_batch(tasks, run_at).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        self.fail(lease, failure, retry_at).await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        self.release(lease, reason).await
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        self.owned_by(owner).await
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        self.expired(now).await
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        self.renew(owners, lease).await
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        self.counts(queue).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.stats().await
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        self.failed(queue).await
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        self.retry_failed(selector).await
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        self.purge(queue, which).await
    }

    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        self.prune_schedule_keys(before).await
    }

    fn keeps_completed(&self) -> bool {
        true
    }

    async fn prune_completed(&self, before: SystemTime, keep_per_queue: u64) -> Result<u64> {
        self.prune_completed(before, keep_per_queue).await
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        self.last_fire(schedule).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        self.set_paused(queue, paused).await
    }

    async fn paused(&self) -> Result<Vec<String>> {
        self.paused().await
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        self.task(id).await
    }

    /// One script over the state indexes; see `scripts.rs` for its cost.
    async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        self.list(filter, after, limit).await
    }

    async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        self.count(filter).await
    }

    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        self.purge_failed(ids).await
    }

    async fn beat(&self, record: &MasterRecord) -> Result<()> {
        self.beat(record).await
    }

    async fn forget_master(&self, id: &str) -> Result<()> {
        self.forget_master(id).await
    }

    async fn masters(&self) -> Result<Vec<MasterRecord>> {
        self.masters().await
    }

    async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        self.cancel_pending(id, reason).await
    }

    async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        self.request_cancel(id, attempt).await
    }

    async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        self.cancel_requests().await
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        self.set_schedule_paused(id, paused).await
    }

    async fn paused_schedules(&self) -> Result<Vec<String>> {
        self.paused_schedules().await
    }

    async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        self.record_history(recording, rows).await
    }

    async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        self.history(queue, since).await
    }

    /// Returns as soon as a task is ready in `queue` (announced by a wake-up token, or due by
    /// its `run_at`), or when `timeout` passes; on a paused queue, once it is resumed (or at
    /// the timeout). See the module docs.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        self.wait(queue, timeout).await
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
}
