//! The RabbitMQ transport (`amqp://`): tasks kept as messages in a RabbitMQ broker shared by every
//! worker process of a project, on any number of hosts. Plain AMQP 0-9-1 with publisher confirms:
//! no plugin is needed (not even the management plugin).
//!
//! # URIs
//!
//! `amqp://[USER[:PASSWORD]@]HOST[:PORT][/VHOST][?prefix=NAME]`. The virtual host is
//! percent-encoded (`%2f` is `/`); an empty path means `/`. The user defaults to `guest` (password
//! `guest`), the port to 5672. The optional `prefix` (default `rex`, spelled like a queue name)
//! starts the name of every broker object of this transport, so several projects (or test runs) can
//! share one virtual host. The other query parameters that are accepted are those of the AMQP
//! client: `heartbeat` (seconds, default 10), `connection_timeout` (milliseconds, default 2000),
//! `frame_max` (bytes, default 16384: the client's buffers are 64 frames, resident) and
//! `channel_max`; any other is refused. Passwords never appear in
//! [`describe`](Transport::describe), in `Debug` output, in errors or in logs.
//!
//! `amqps://` connects over TLS (port 5671 by default) and checks the broker's certificate against
//! the system's roots and the host name. As in RabbitMQ's own URI spec, `cacertfile` names a PEM
//! file of roots trusted as well and `certfile` + `keyfile` a client certificate and its PKCS#8 key
//! (for `fail_if_no_peer_cert` listeners); `verify=verify_none` is refused.
//!
//! # Broker objects (`P` is the prefix, `Q` a queue of tasks)
//!
//! | object | kind | holds |
//! | --- | --- | --- |
//! | `P.Q` | fanout exchange, durable | every publish of a ready task goes here |
//! | `P.Q` | classic queue, durable, bound to the exchange `P.Q` | the ready tasks, FIFO; claims `basic.get` from it |
//! | `P.Q.delay.K` | queue, durable, `K` = 0..=22, `x-message-ttl` = 8 ms × 2^K, `x-dead-letter-exchange` = `P.Q` | delayed tasks: a message expires back into the exchange `P.Q` (the ready queue, and it wakes waiters) |
//! | `P.Q.failed` | queue, durable | failed tasks, kept with their whole record |
//! | `P.Q.paused` | queue, durable, `x-max-length` 1, `x-overflow` `reject-publish` | one marker message while `Q` is paused (`pause.rs`) |
//! | `P.Q.wake` | fanout exchange, durable | resuming `Q` publishes here: it wakes the waiters, not the ready queue |
//! | server-named (`amq.gen-…`) | queue, exclusive, auto-delete, `x-max-length` 1, bound to the exchanges `P.Q` and `P.Q.wake` | one per process, Tokio runtime and waited queue: wake-up signals for [`wait`](Transport::wait) |
//! | `P._queues` | queue, durable | the queue names (one message per name) for `stats`, `failed`, `paused`, listings |
//! | `P._masters` | queue, durable, `x-max-length` 10,000 | masters' heartbeat records, each message expiring with its record (`heartbeats.rs`) |
//! | `P._events` | fanout exchange, transient | lifecycle events, a JSON array per message, for the server-named queue (exclusive, auto-delete) of each follower (`events.rs`) |
//! | `P._events.followers` | queue, transient, `x-max-length` 0 | nothing: each follower of the events consumes it, to be counted |
//! | `P._key.KEY` | queue, durable, `x-max-length` 1, `x-overflow` `reject-publish`, `x-expires` 7 days | one used idempotency key (`P._keyh.HASH` when the name would be longer than 255 bytes) |
//! | `P._fires.ID` | queue, durable, `x-max-length` 16 | the last fire times of one schedule (`P._firesh.HASH` when too long) |
//! | `P._paused_schedule.ID`; `P._paused_schedules` | queue, durable, `x-max-length` 1, `x-overflow` `reject-publish`; queue, durable | one marker while the schedule is paused; the ids of the paused schedules, whose flags readers look at (`pause.rs`) |
//!
//! Queue names cannot start with `_` or hold a `.`, so the `P._…` names never collide with the
//! objects of a queue, nor `P.Q.paused` with another queue's. Objects are declared on first use and
//! remembered per process; the objects of a task queue are declared together. A message is the JSON
//! of a whole task — id, queue, payload, settled attempts, errors, crashes, `created_at`, `run_at`,
//! last error and the attempt history — published persistent (delivery mode 2). Every operation
//! waits for the broker's confirms of what it published before it returns (a batch waits for all of
//! its publishes at once, see "Batches"), so what an operation reports as done is on the broker
//! (and on disk).
//!
//! Task ids are made without coordination: milliseconds since the epoch shifted left by 22 bits,
//! plus a per-process counter that starts at random, never going backwards within a process. They
//! increase within a process and are unique across processes with overwhelming probability (two
//! processes would need the same millisecond and counter); they stay positive until 2039.
//!
//! # Delivery model
//!
//! Leases are held by the broker: a claim is a `basic.get` without automatic acknowledgement, and
//! the task's message stays *unacknowledged*, owned by the claiming connection, until it is
//! settled. Settling publishes whatever the settlement produces (follow-up submits, the task again
//! with its new record for a retry or a release, the task into `P.Q.failed`), waits for the
//! confirms, then acknowledges the claimed message. The lease token is a fresh random number per
//! claim, known only to the claiming process: a settlement of a lease this process does not hold
//! (already settled, or lost with its connection) changes nothing and returns `false`.
//!
//! When the holder dies or its connection drops, RabbitMQ puts the message back into the queue at
//! once, marked *redelivered*. The next claim that gets it hands it out with [`Task::lost`] set and
//! the number of the attempt that was lost, and [`Task::unwitnessed_returns`]: the caller decides
//! whether that attempt was a crash. The `rex` worker asks what its master saw when the previous
//! child died: the task that was running is settled as a crash ([`fail`](Transport::fail), by its
//! retry policy, with the master's reason), a task that was only in that child's window runs again
//! uncharged, and a task nobody here saw die is [`release`](Transport::release)d once — which
//! counts it in `unwitnessed_returns` — and charged a crash the next time. This is the whole of
//! crash recovery on this transport, and it differs from the SQL and Redis transports:
//!
//! * [`owned_by`](Transport::owned_by), [`expired`](Transport::expired) and
//!   [`renew`](Transport::renew) only see the calling process's own claims (claims of other
//!   processes are invisible); a supervisor's immediate reclaim of a dead worker's task is the
//!   broker's redelivery plus the settlement of the lost attempt above
//!   ([`Transport::leases_held_by_broker`] is `true`).
//! * Lease times are bookkeeping of the claiming process; the broker holds the message for as
//!   long as the connection lives, however long the lease.
//! * A redelivered message does not wake waiters: it is found by the next claim, at the latest
//!   when a waiter's timeout passes.
//!
//! Delays need no plugin: a task not ready before `run_at` is published to the largest delay queue
//! whose TTL fits in the remaining time (the smallest one below 8 ms). When it expires it goes back
//! to the ready queue; a claim that gets a task whose `run_at` is still ahead publishes it again to
//! the right delay queue and goes on. A task thus becomes ready within about 8 ms of its `run_at`
//! after a few hops; delays beyond the largest queue (9.3 hours) loop through it. Between its
//! return and its `run_at` (less than half of the remaining delay) a task counts as ready.
//!
//! # Guarantees and their limits
//!
//! * At-least-once: the task is acknowledged after what settling it produced is confirmed.
//!   `complete` is not one transaction: a crash between the follow-up publishes and the
//!   acknowledgement leaves the follow-ups enqueued and the task redelivered, so it runs again.
//!   Likewise a failure or release whose acknowledgement is lost leaves two copies.
//! * Idempotency keys: a keyed submit first publishes a marker into the key's queue, which holds
//!   one message and refuses more: the broker's ack means first use (the task is then
//!   published), its nack means the key was used (the submit returns `None`). Each key enqueues
//!   at most once; a crash between the two publishes loses that one enqueue — at-most-once for
//!   keyed submits, where the SQL and Redis transports are atomic. A key is forgotten 7 days
//!   after its last use (the queue expires; every submit with the key renews it).
//! * The fire time of a keyed submit whose key is a [schedule key](crate::schedule_key) is
//!   also published to the schedule's fires queue, which keeps the last 16:
//!   [`last_fire`](Transport::last_fire) is the greatest of them.
//! * `counts`: `delayed` is the sum over the delay queues (counted first, so a task moving
//!   to the ready queue meanwhile is not missed), `ready` the ready queue, `failed` the failed
//!   queue, `running` the calling process's own claims; `next_run_at` is always `None`.
//!   [`stats`](Transport::stats) has no `oldest_pending_ms` (always `None`).
//! * Listing (`stats`, `failed`, `retry_failed`) reads the queue names and the failed tasks by
//!   taking every message of their queue without acknowledging it, then closing the channel so
//!   they all go back in order. Readers running at the same time may see a partial list (a
//!   message held by one is invisible to the other). The reader also drops duplicate names.
//! * Messages in a ready queue that are not tasks of this transport are moved unchanged to
//!   the failed queue by the claim that meets them; `failed` and `retry_failed` skip them
//!   (`purge` removes them).
//! * Every process declares the objects it uses, each of them once per process. Objects
//!   deleted behind a running process's back are declared again after the first operation
//!   that meets their absence, which fails with the retryable error (publishes are
//!   `mandatory`: an unroutable one is refused, not lost).
//!
//! # Batches
//!
//! What is batched, and what is not:
//!
//! * [`submit_batch`](Transport::submit_batch) publishes every task pipelined on the publish
//!   channel — all of them sent, then their confirms awaited together: one confirm wait per
//!   batch (per window of 1,000 tasks for larger batches) instead of one per task. Each task is
//!   published as by [`submit`](Transport::submit) without a key: a fresh id (ids in the order
//!   given, increasing, so the claim order is the order given), to its exchange (which wakes
//!   waiters) or, with a `run_at` ahead, to its delay queue; its queue is declared and
//!   registered first (each once per process). Every queue name is checked before anything is
//!   sent. It is not one transaction: on an error (a nack, a lost connection, no confirms
//!   within 10 s) any part of the batch may have been enqueued, and no ids are returned.
//! * [`settle`](Transport::settle) takes each run of consecutive completions in the batch
//!   together: every lease of the run is checked (fenced by its own token, as by `complete`; a
//!   stale one comes back `false` and its follow-ups are not published), then all their
//!   follow-up submits are published pipelined with one confirm wait, then their
//!   acknowledgements are sent together (individually, never `multiple`: other claims of the
//!   channel are not touched). The ordering rule of `complete` holds for the whole run: no
//!   task is acknowledged before every follow-up of the run is confirmed, so a crash in between
//!   runs the tasks again rather than losing their follow-ups. When publishing fails, every
//!   lease of the run is kept (its follow-ups may be published again by the next try). Failures
//!   and releases are settled one at a time, in batch order, as by `fail` and `release`.
//! * [`settle_and_claim`](Transport::settle_and_claim) is that `settle`, then `claim_batch`, in
//!   one operation: the acknowledgements go out just ahead of the `basic.get`s.
//! * [`claim_batch`](Transport::claim_batch) sends `max` `basic.get`s pipelined on the claim
//!   channel (one round trip) and handles the messages in queue order; messages that are not a
//!   result (a delayed task back early, a foreign message) are moved away and more are asked
//!   for, until `max` tasks are leased or the queue answers empty. An error after some
//!   messages were leased returns those (the error comes back with the next call); messages
//!   got after the error are rejected back to the queue. A window is pulled when the caller
//!   wants it, rather than pushed to a consumer (see `docs/transports.md`).
//!
//! # Waiting
//!
//! [`wait`](Transport::wait) is push-based: each process and Tokio runtime that waits on a queue
//! declares one exclusive queue bound to the queue's exchange and consumes it; any delivery is a
//! wake-up. A waiter first checks the ready queue's message count (then it returns at once), then
//! waits for a signal or its timeout. A submit from any host, or a delayed task expiring back, thus
//! wakes waiters within milliseconds, and idle waiters send nothing to the broker. A waiter whose
//! connection is lost returns within a second (the next call connects again, or reports the
//! outage). Wake-ups may be spurious, as the contract allows.
//!
//! # Connections and outages
//!
//! Opening a transport does not connect: the first operation does. Each Tokio runtime that uses the
//! transport (the CLI uses several current-thread runtimes) gets a connection of its own, with a
//! channel for claims and acknowledgements and one for confirmed publishes; lookups that may fail
//! with `NOT_FOUND` (which closes a channel) use channels of their own. The AMQP heartbeat is 10 s,
//! so a dead peer is noticed within about 20 s — and the deliveries of a dead host are returned by
//! then. An operation with no answer within 15 s (a connection whose packets are dropped, or a
//! request or reply lost while the heartbeats go on) closes its connection sooner. Connecting gives
//! up after 2 s. Connection trouble (refused, reset, heartbeat missed, broker shutting down…) is
//! [`TransportError::Unavailable`], the retryable error; the connection is then dropped, the leases
//! claimed through it are stale (the broker returned their messages), and the next operation
//! connects again. A publish whose confirm takes more than 10 s (a broker blocking publishers under
//! a resource alarm) fails the same way. A dropped transport closes its connections, so its claims
//! go back to the broker at once. After a failed connection attempt the next ones wait
//! exponentially longer (100 ms doubling up to 5 s): operations in between fail at once with the
//! last error, so nothing spins against a broker that is down.
//!
//! # Files
//!
//! * `mod.rs`: these docs, [`AmqpTransport`] and its [`Transport`] impl (argument checks, then
//!   delegations to the methods of `Inner` defined in the files below).
//! * `inner.rs`: `Inner` (the state of one transport) and the lock helper the files share.
//! * `uri.rs`: parsing URIs, their display form without secrets, scrubbing secrets from errors;
//!   the state of a transport opened on one (`Inner::new`).
//! * `runtimes.rs`: the session of each Tokio runtime (kept in the crate's `runtime_cache`,
//!   shared with the Redis transport; dead sessions are evicted first), reconnecting with
//!   backoff, closing sessions that are dropped.
//! * `session.rs`: one connection and its channels; lapin errors as [`TransportError`]s.
//! * `topology.rs`: the name of every broker object (the objects of a queue, delay buckets,
//!   registry, keys, fires) and declaring them.
//! * `ops.rs`: running an operation as a task of the connection's runtime, bounded in time;
//!   sending AMQP methods pipelined.
//! * `publish.rs`: the message `Body` (a whole task), task ids, confirmed publishes (alone or
//!   pipelined), `submit` and `submit_batch`.
//! * `lease.rs`: claims, the leases this process holds, settling (complete, fail, release, and
//!   batches of them) and renewing them.
//! * `operator.rs`: counts, stats, browsing a queue, listing and retrying failed tasks, purge,
//!   last fire, and deleting everything (for tests).
//! * `wake.rs`: `wait` and its wake-up consumers.
//! * `events.rs`: lifecycle events: publishing them, counting and feeding their followers.
//! * The console (each file documents what RabbitMQ allows): `pause.rs` (a marker message per
//!   paused queue or schedule, read by claims, waits and schedulers), `console.rs` (lookups,
//!   listings, counts and purges by browsing; running tasks: this process's claims),
//!   `heartbeats.rs` (masters), `history.rs` (throughput history: per master and minute).
//!
//! [`TransportError`]: crate::TransportError
//! [`TransportError::Unavailable`]: crate::TransportError::Unavailable

mod console;
mod events;
mod heartbeats;
mod history;
mod inner;
mod lease;
mod operator;
mod ops;
mod pause;
mod publish;
mod runtimes;
mod session;
mod topology;
mod uri;
mod wake;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::batch::validate_submits;
use crate::{
    Failure, HistoryRow, Lease, MasterRecord, Payload, PurgeWhich, QueueCounts, QueueStats, Result,
    RetriedTask, Selector, Settlement, Submit, SubmitOptions, Task, TaskFilter, TaskId,
    TaskSummary, Transport, validate_queue_name,
};
use inner::{Inner, lock};
use publish::{Body, IdState};
use uri::parse_uri;

const TRANSPORT: &str = "AMQP";
/// An operation with no answer within this long gives its connection up (see
/// [`Inner::no_reply`]). Longer than a publish's wait for its confirm.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
/// [`OPERATION_TIMEOUT`] for operators' listings, retries and purges, which read whole
/// queues.
const BULK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Parse a URI as [`open_uri`] would, without connecting.
pub fn check_uri(uri: &str) -> Result<()> {
    uri::parse_uri(uri).map(drop)
}

pub fn open_uri(uri: &str) -> Result<Arc<dyn Transport>> {
    Ok(Arc::new(AmqpTransport::open_uri(uri)?))
}

/// A transport backed by a RabbitMQ broker. See the module docs.
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

impl AmqpTransport {
    /// Open `amqp://...` (see the module docs). Does not connect.
    pub fn open_uri(uri: &str) -> Result<Self> {
        Ok(AmqpTransport {
            inner: Arc::new(Inner::new(parse_uri(uri)?)),
        })
    }

    /// The object-name prefix (`rex` unless the URI's `prefix` says otherwise).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }
}

#[async_trait::async_trait]
impl Transport for AmqpTransport {
    fn describe(&self) -> String {
        self.inner.display.clone()
    }

    fn leases_held_by_broker(&self) -> bool {
        true
    }

    fn needs_constant_io(&self) -> bool {
        true
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        self.inner.names(queue)?;
        let (queue, opts) = (queue.to_string(), opts.clone());
        self.spawned(|inner| inner.submit(queue, payload, opts))
            .await
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        self.inner.names(queue)?;
        let (queue, owner) = (queue.to_string(), owner.to_string());
        let tasks = self
            .spawned(|inner| inner.claim_batch(queue, owner, lease, 1))
            .await?;
        Ok(tasks.into_iter().next())
    }

    /// `max` `basic.get`s pipelined: one round trip. See the module docs, "Batches".
    async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        validate_queue_name(queue)?;
        self.inner.names(queue)?;
        let (queue, owner) = (queue.to_string(), owner.to_string());
        self.spawned(|inner| inner.claim_batch(queue, owner, lease, max.max(1)))
            .await
    }

    /// Publishes the follow-ups (confirmed), then acknowledges the task: see the module docs
    /// for what a crash in between does.
    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
            self.inner.names(&submit.queue)?;
        }
        let (lease, submits) = (*lease, submits.to_vec());
        self.spawned(|inner| inner.complete(lease, submits)).await
    }

    /// Runs of consecutive completions together: their follow-ups published pipelined with
    /// one wait for the confirms, then their acknowledgements sent together. Failures and
    /// releases one at a time. See the module docs, "Batches".
    async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        validate_submits(batch)?;
        for settlement in batch {
            for submit in settlement.submits() {
                self.inner.names(&submit.queue)?;
            }
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.spawned(|inner| inner.settle_batch(batch)).await
    }

    /// `settle`, then `claim_batch`, in one operation on the connection's runtime: the
    /// acknowledgements go out just ahead of the `basic.get`s.
    async fn settle_and_claim(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        validate_submits(batch)?;
        for settlement in batch {
            for submit in settlement.submits() {
                self.inner.names(&submit.queue)?;
            }
        }
        validate_queue_name(queue)?;
        self.inner.names(queue)?;
        let (batch, queue, owner) = (batch.to_vec(), queue.to_string(), owner.to_string());
        self.spawned(|inner| async move {
            let applied = Arc::clone(&inner).settle_batch(batch).await?;
            // As `settle_then_claim`: a failed claim is the caller's to see.
            let next = if max == 0 {
                Vec::new()
            } else {
                inner.claim_batch(queue, owner, lease, max).await?
            };
            Ok((applied, next))
        })
        .await
    }

    /// Every task published pipelined, then one wait for all the confirms. See the module
    /// docs, "Batches".
    async fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        for task in tasks {
            validate_queue_name(&task.queue)?;
            self.inner.names(&task.queue)?;
        }
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let tasks = tasks.to_vec();
        self.spawned(|inner| inner.submit_batch(tasks, run_at))
            .await
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let (lease, failure) = (*lease, failure.clone());
        self.spawned(|inner| inner.fail(lease, failure, retry_at))
            .await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let (lease, reason) = (*lease, reason.to_string());
        self.spawned(|inner| inner.release(lease, reason)).await
    }

    /// This process's claims only (see the module docs).
    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        Ok(self.inner.held_tasks(|task| task.owner == owner))
    }

    /// This process's claims only (see the module docs).
    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        Ok(self.inner.held_tasks(|task| task.lease_until < now))
    }

    /// This process's claims only (see the module docs).
    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        Ok(self.inner.renew(owners, lease))
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        self.bounded(self.inner.counts(queue)).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.bounded_within(BULK_TIMEOUT, self.inner.stats()).await
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        self.bounded_within(BULK_TIMEOUT, self.inner.failed(queue))
            .await
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        if let Selector::Queue(queue) = selector {
            validate_queue_name(queue)?;
        }
        let selector = selector.clone();
        self.spawned_within(BULK_TIMEOUT, |inner| async move {
            inner.retry_failed(&selector).await
        })
        .await
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        self.bounded_within(BULK_TIMEOUT, self.inner.purge(queue, which))
            .await
    }

    /// Nothing to do: a key's queue expires by itself 7 days after its last use, and a
    /// schedule's fires queue keeps only its last 16 fire times.
    async fn prune_schedule_keys(&self, _before: SystemTime) -> Result<u64> {
        Ok(0)
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        self.bounded(self.inner.last_fire(schedule)).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        validate_queue_name(queue)?;
        self.inner.names(queue)?;
        let queue = queue.to_string();
        self.spawned(move |inner| inner.set_paused(queue, paused))
            .await
    }

    async fn paused(&self) -> Result<Vec<String>> {
        self.spawned_within(BULK_TIMEOUT, Inner::paused).await
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        self.spawned_within(BULK_TIMEOUT, move |inner| inner.task(id))
            .await
    }

    async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        let filter = self.inner.checked(filter)?;
        self.spawned_within(BULK_TIMEOUT, move |inner| inner.list(filter, after, limit))
            .await
    }

    async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        let filter = self.inner.checked(filter)?;
        self.spawned_within(BULK_TIMEOUT, move |inner| inner.count(filter))
            .await
    }

    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        let ids = ids.to_vec();
        self.spawned_within(BULK_TIMEOUT, move |inner| inner.purge_failed(ids))
            .await
    }

    async fn beat(&self, record: &MasterRecord) -> Result<()> {
        let record = record.clone();
        self.spawned(move |inner| inner.beat(record)).await
    }

    async fn forget_master(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.spawned_within(BULK_TIMEOUT, move |inner| inner.forget_master(id))
            .await
    }

    async fn masters(&self) -> Result<Vec<MasterRecord>> {
        self.spawned_within(BULK_TIMEOUT, Inner::masters).await
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        crate::validate_schedule_id(id)?;
        let id = id.to_string();
        self.spawned(move |inner| inner.set_schedule_paused(id, paused))
            .await
    }

    async fn paused_schedules(&self) -> Result<Vec<String>> {
        self.spawned(|inner| inner.paused_schedules()).await
    }

    async fn schedule_paused(&self, id: &str) -> Result<bool> {
        crate::validate_schedule_id(id)?;
        let id = id.to_string();
        self.spawned(move |inner| inner.schedule_paused(id)).await
    }

    async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        crate::history::check_rows(rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        let (recording, rows) = (recording.to_string(), rows.to_vec());
        self.spawned(move |inner| inner.record_history(recording, rows))
            .await
    }

    async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        let queue = queue.map(str::to_string);
        self.spawned_within(BULK_TIMEOUT, move |inner| inner.history(queue, since))
            .await
    }

    /// A message per recording, which every reading takes and gives back: once a minute.
    fn history_interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn publish_events(&self, events: &[crate::TaskEvent]) -> Result<()> {
        self.publish_now(events).await
    }

    async fn followed(&self) -> Result<bool> {
        self.followed_now().await
    }

    async fn follow_events(&self) -> Result<crate::EventFeed> {
        self.follow_now().await
    }

    /// Push-based: returns when a task is published to `queue` or one expires into it from a
    /// delay queue (from any process), or when `timeout` passes. See the module docs.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        self.inner.wait(queue, timeout).await
    }
}
