//! Leases: claiming a task (a `basic.get` left unacknowledged), the claims this process holds
//! ([`Held`], by lease token), and settling them — publish what the settlement produces
//! (follow-ups, the task again, the task into the failed queue), then acknowledge — for
//! complete, fail and release, and for a batch (`settle`: its completions together); plus the
//! local views of them (owned, expired, renew, running, the console's summaries).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicRejectOptions};
use lapin::types::DeliveryTag;

use super::ops::pipelined;
use super::session::Session;
use super::topology::Names;
use super::{Body, Inner, lock};
use crate::task::{add_ms, from_epoch_ms, now_ms, to_epoch_ms};
use crate::{
    Attempt, Failure, FailureKind, Lease, Outcome, Result, Settlement, Submit, Task, TaskId,
    TaskState, TaskSummary,
};

/// A claim handles at most this many messages that are not its result (delayed tasks sent
/// back, foreign messages moved away) before it reports that nothing is ready.
const MAX_CLAIM_STEPS: usize = 10_000;

/// A claim of this process, until it is settled.
pub(super) struct Held {
    task: Task,
    body: Body,
    /// The channel the message was got on: the acknowledgement must go there, and when it is
    /// closed the broker has returned the message (the lease is stale).
    pub(super) channel: Channel,
    tag: DeliveryTag,
    /// The [`Session::serial`] of the connection it was got on.
    pub(super) session: u64,
    /// When it was claimed (epoch ms): the attempt's start in its history.
    claimed_at: i64,
}

/// How many times a task that this process lost with its connection is handed out again
/// without being marked lost (see [`Inner::forgiven`]); after that, as a crash, so that a
/// task whose settlement breaks the connection every time cannot run forever.
const MAX_FORGIVEN: u8 = 2;
/// Task ids remembered as lost with a connection (more are forgotten: marked lost then).
const MAX_GIVEN_UP: usize = 10_000;
/// Claims whose reply may have been lost with their connection, remembered at most: as many
/// redelivered messages of unknown history are not marked lost.
const MAX_UNSEEN_GETS: u32 = 16;
/// Acknowledgements remembered with their connection, latest first.
pub(super) const MAX_RECENT_ACKS: usize = 1024;

/// A task this process lost with its connection: how many times, and whether it is still to
/// come back.
#[derive(Default)]
pub(super) struct GivenUp {
    times: u8,
    pending: bool,
}

impl Inner {
    /// Claim up to `max` tasks: `max` `basic.get`s sent pipelined (one round trip), their
    /// messages handled in queue order. Messages that are not a result (a delayed task back
    /// early, a foreign message) are moved away and more are asked for, until `max` tasks are
    /// leased, the queue answers empty, or [`MAX_CLAIM_STEPS`] messages were handled.
    pub(super) async fn claim_batch(
        self: Arc<Self>,
        queue: String,
        owner: String,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        let session = self.session().await?;
        self.ensure_topology(&session, &queue).await?;
        if self.claims_paused(&session, &queue).await? {
            return Ok(Vec::new());
        }
        let names = self.names(&queue)?;
        let mut tasks = Vec::with_capacity(max);
        let mut steps = 0;
        while tasks.len() < max && steps < MAX_CLAIM_STEPS {
            let want = (max - tasks.len()).min(MAX_CLAIM_STEPS - steps);
            steps += want;
            let gets = (0..want)
                .map(|_| {
                    session.claim.basic_get(
                        names.ready.as_str().into(),
                        BasicGetOptions { no_ack: false },
                    )
                })
                .collect();
            let mut empty = false;
            let mut failed = None;
            for got in pipelined(gets).await {
                let message = match got.map_err(|e| self.error(e)) {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        empty = true;
                        continue;
                    }
                    Err(e) => {
                        if e.is_retryable() {
                            // The broker may have handed the message out with a reply that
                            // was lost: it comes back redelivered, but nothing crashed.
                            let unseen = &self.unseen_gets;
                            let _ = unseen.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                Some((n + 1).min(MAX_UNSEEN_GETS))
                            });
                        }
                        failed.get_or_insert(e);
                        continue;
                    }
                };
                let delivery = message.delivery;
                if failed.is_some() {
                    // After an error nothing more is taken: back to the queue (best effort;
                    // the broker returns it anyway when the channel closes).
                    let _ = session
                        .claim
                        .basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: true })
                        .await;
                    continue;
                }
                match self
                    .accept(&session, &names, &queue, &owner, lease, delivery)
                    .await
                {
                    Ok(Some(task)) => tasks.push(task),
                    Ok(None) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                // What was leased before the error is the caller's; the error comes back with
                // the next call if it lasts.
                return if tasks.is_empty() { Err(e) } else { Ok(tasks) };
            }
            if empty {
                break;
            }
        }
        Ok(tasks)
    }

    /// One message got by a claim: leased as a task, or handled and dropped (`None`).
    async fn accept(
        &self,
        session: &Session,
        names: &Names,
        queue: &str,
        owner: &str,
        lease: Duration,
        delivery: lapin::message::Delivery,
    ) -> Result<Option<Task>> {
        let tag = delivery.delivery_tag;
        let now = now_ms();
        let handled = async {
            let mut body: Body = match serde_json::from_slice(&delivery.data) {
                Ok(body) => body,
                Err(_) => {
                    // Not a task of ours: keep it, out of the way.
                    self.publish_confirmed(session, "", &names.failed, &delivery.data)
                        .await?;
                    return Ok(None);
                }
            };
            queue.clone_into(&mut body.queue);
            if body.run_at_ms > now {
                // Back from a delay queue early: on to the next one.
                self.publish_task(session, &body).await?;
                return Ok(None);
            }
            Ok(Some(body))
        }
        .await;
        match handled {
            Ok(Some(body)) => {
                // Redelivered: its holder was lost without settling it. The attempt is handed
                // out again, marked, for the caller to settle (see `Task::lost`). Unless this
                // very process lost it with a connection (not a crash).
                let lost = delivery.redelivered
                    && !self.forgiven(body.id)
                    && self
                        .unseen_gets
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_err();
                let token = fastrand::u64(1..1 << 63);
                let task = Task {
                    id: body.id,
                    queue: queue.to_string(),
                    payload: body.payload.clone(),
                    attempt: body.attempts + 1,
                    errors: body.errors,
                    crashes: body.crashes,
                    lease_token: token,
                    owner: owner.to_string(),
                    lease_until: from_epoch_ms(add_ms(now, lease)),
                    created_at: from_epoch_ms(body.created_at_ms),
                    lost,
                    unwitnessed_returns: body.unwitnessed_returns,
                };
                let held = Held {
                    task: task.clone(),
                    body,
                    channel: session.claim.clone(),
                    tag,
                    session: session.serial,
                    claimed_at: now_ms(),
                };
                lock(&self.leases).insert(token, held);
                Ok(Some(task))
            }
            Ok(None) => {
                // Handled (published elsewhere): drop this copy.
                session
                    .claim
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| self.error(e))?;
                Ok(None)
            }
            Err(e) => {
                // Give it back for the next claim (best effort; the broker returns it anyway
                // when the channel closes).
                let _ = session
                    .claim
                    .basic_reject(tag, BasicRejectOptions { requeue: true })
                    .await;
                Err(e)
            }
        }
    }

    /// Take the lease out of the map if this process holds it and it is still good.
    fn take_lease(&self, lease: &Lease) -> Option<Held> {
        let mut leases = lock(&self.leases);
        if leases.get(&lease.token)?.task.id != lease.id {
            return None;
        }
        let held = leases.remove(&lease.token)?;
        if held.channel.status().connected() {
            return Some(held);
        }
        drop(leases);
        self.given_up([held.task.id]);
        None
    }

    /// Forget the claims that do not pass `keep` (their connection is gone or given up):
    /// the broker returns their messages; when one comes back to this process it is not
    /// marked lost (nothing crashed).
    pub(super) fn drop_leases(&self, keep: impl Fn(&Held) -> bool) {
        let mut dropped = Vec::new();
        lock(&self.leases).retain(|_, held| {
            let kept = keep(held);
            if !kept {
                dropped.push(held.task.id);
            }
            kept
        });
        self.given_up(dropped);
    }

    fn given_up(&self, ids: impl IntoIterator<Item = TaskId>) {
        let mut given_up = lock(&self.given_up);
        for id in ids {
            if given_up.len() >= MAX_GIVEN_UP {
                given_up.clear();
            }
            let entry = given_up.entry(id).or_default();
            entry.times = entry.times.saturating_add(1);
            entry.pending = true;
        }
    }

    /// Whether a redelivered task is one this process lost with a connection, to be run again
    /// as it was (at most [`MAX_FORGIVEN`] times).
    fn forgiven(&self, id: TaskId) -> bool {
        match lock(&self.given_up).get_mut(&id) {
            Some(entry) if entry.pending => {
                entry.pending = false;
                entry.times <= MAX_FORGIVEN
            }
            _ => false,
        }
    }

    /// Put a lease back after a settlement failed before its acknowledgement.
    fn restore_lease(&self, token: u64, held: Held) {
        if held.channel.status().connected() {
            lock(&self.leases).insert(token, held);
        } else {
            self.given_up([held.task.id]);
        }
    }

    /// Acknowledge a claimed message. Sent is not received: if its connection dies before
    /// the broker has it, the message comes back, and is not marked lost to this process
    /// (see [`Inner::given_up_acked`]).
    async fn ack(&self, held: &Held) -> Result<()> {
        let acked = held
            .channel
            .basic_ack(held.tag, BasicAckOptions::default())
            .await
            .map_err(|e| self.error(e));
        match acked {
            Ok(()) => {
                let mut recent = lock(&self.acked);
                if recent.len() >= MAX_RECENT_ACKS {
                    recent.pop_front();
                }
                recent.push_back((held.session, held.task.id));
            }
            Err(_) => self.given_up([held.task.id]),
        }
        acked
    }

    /// A session was given up: the tasks acknowledged through it lately may come back (the
    /// acknowledgement may not have reached the broker).
    pub(super) fn given_up_acked(&self, session: u64) {
        let ids: Vec<TaskId> = lock(&self.acked)
            .iter()
            .filter(|(serial, _)| *serial == session)
            .map(|(_, id)| *id)
            .collect();
        self.given_up(ids);
    }

    /// Publish what a settlement produces, then acknowledge the claimed message. On a failure
    /// before the acknowledgement the lease is kept.
    async fn settle<F, Fut>(&self, lease: &Lease, publish: F) -> Result<bool>
    where
        F: FnOnce(Arc<Session>, Body, String, i64, i64) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let Some(held) = self.take_lease(lease) else {
            return Ok(false);
        };
        let published = async {
            let session = self.session().await?;
            publish(
                session,
                held.body.clone(),
                held.task.owner.clone(),
                held.claimed_at,
                now_ms(),
            )
            .await
        }
        .await;
        if let Err(e) = published {
            self.restore_lease(lease.token, held);
            return Err(e);
        }
        self.ack(&held).await?;
        Ok(true)
    }

    pub(super) async fn complete(
        self: Arc<Self>,
        lease: Lease,
        submits: Vec<Submit>,
    ) -> Result<bool> {
        let applied = self.complete_all(vec![(lease, submits)]).await?;
        Ok(applied == [true])
    }

    /// Complete several leases, each fenced by its own token: take every lease this process
    /// holds (the others come back `false`), publish all their follow-ups pipelined with one
    /// wait for the confirms, then send the acknowledgements together. On a failure before
    /// the acknowledgements every lease is kept (follow-ups already published are published
    /// again by the next try: at-least-once, as for one completion).
    pub(super) async fn complete_all(
        &self,
        completions: Vec<(Lease, Vec<Submit>)>,
    ) -> Result<Vec<bool>> {
        let mut applied = Vec::with_capacity(completions.len());
        let mut taken = Vec::with_capacity(completions.len());
        for (lease, submits) in completions {
            // In order: a lease quoted twice is applied once.
            match self.take_lease(&lease) {
                Some(held) => {
                    applied.push(true);
                    taken.push((lease.token, held, submits));
                }
                None => applied.push(false),
            }
        }
        if taken.is_empty() {
            return Ok(applied);
        }
        let published = async {
            let session = self.session().await?;
            let now = now_ms();
            let bodies: Vec<Body> = taken
                .iter()
                .flat_map(|(_, _, submits)| submits)
                .map(|submit| self.new_body(&submit.queue, submit.payload.clone(), now, now))
                .collect();
            self.publish_new_tasks(&session, &bodies).await
        }
        .await;
        if let Err(e) = published {
            for (token, held, _) in taken {
                self.restore_lease(token, held);
            }
            return Err(e);
        }
        // Every follow-up is confirmed: now the acknowledgements, all sent at once.
        let acks = pipelined(taken.iter().map(|(_, held, _)| self.ack(held)).collect()).await;
        acks.into_iter().collect::<Result<()>>()?;
        Ok(applied)
    }

    /// `settle`: runs of consecutive completions together ([`complete_all`]), each failure and
    /// release on its own, in the order of the batch.
    ///
    /// [`complete_all`]: Self::complete_all
    pub(super) async fn settle_batch(self: Arc<Self>, batch: Vec<Settlement>) -> Result<Vec<bool>> {
        let mut applied = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter().peekable();
        while let Some(settlement) = batch.next() {
            match settlement {
                Settlement::Complete { lease, submits, .. } => {
                    let mut run = vec![(lease, submits)];
                    while let Some(Settlement::Complete { lease, submits, .. }) =
                        batch.next_if(|next| matches!(next, Settlement::Complete { .. }))
                    {
                        run.push((lease, submits));
                    }
                    applied.extend(self.complete_all(run).await?);
                }
                Settlement::Fail {
                    lease,
                    failure,
                    retry_at,
                } => applied.push(Arc::clone(&self).fail(lease, failure, retry_at).await?),
                Settlement::Release { lease, reason } => {
                    applied.push(Arc::clone(&self).release(lease, reason).await?);
                }
            }
        }
        Ok(applied)
    }

    pub(super) async fn fail(
        self: Arc<Self>,
        lease: Lease,
        failure: Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let this = Arc::clone(&self);
        self.settle(
            &lease,
            |session, mut body, owner, started, now| async move {
                body.attempts += 1;
                let outcome = match failure.kind {
                    FailureKind::Error => {
                        body.errors += 1;
                        Outcome::Error
                    }
                    FailureKind::Crash => {
                        body.crashes += 1;
                        Outcome::Crash
                    }
                    FailureKind::Cancelled => Outcome::Cancelled,
                };
                body.last_error = Some(failure.reason.clone());
                body.history.push(Attempt {
                    attempt: body.attempts,
                    owner,
                    outcome,
                    reason: Some(failure.reason),
                    started_at: Some(started),
                    finished_at: now,
                });
                match retry_at {
                    Some(at) => {
                        body.run_at_ms = to_epoch_ms(at);
                        this.publish_task(&session, &body).await
                    }
                    None => {
                        // A failed task's run_at is the time it failed (what listings show).
                        body.run_at_ms = now;
                        let names = this.names(&body.queue)?;
                        this.ensure_topology(&session, &body.queue).await?;
                        let data = this.encode(&body)?;
                        this.publish_confirmed(&session, "", &names.failed, &data)
                            .await
                    }
                }
            },
        )
        .await
    }

    pub(super) async fn release(self: Arc<Self>, lease: Lease, reason: String) -> Result<bool> {
        let this = Arc::clone(&self);
        let lost = lock(&self.leases)
            .get(&lease.token)
            .is_some_and(|held| held.task.lost);
        self.settle(
            &lease,
            |session, mut body, owner, started, now| async move {
                if lost {
                    // Given back by a claimer that cannot tell why its holder died.
                    body.unwitnessed_returns += 1;
                }
                body.history.push(Attempt {
                    attempt: body.attempts + 1,
                    owner,
                    outcome: Outcome::Released,
                    reason: Some(reason),
                    started_at: Some(started),
                    finished_at: now,
                });
                body.run_at_ms = now;
                this.publish_task(&session, &body).await
            },
        )
        .await
    }

    /// This process's live claims matching `keep`, by id; forgets the stale ones.
    pub(super) fn held_tasks(&self, keep: impl Fn(&Task) -> bool) -> Vec<Task> {
        self.drop_leases(|held| held.channel.status().connected());
        let leases = lock(&self.leases);
        let mut tasks: Vec<Task> = leases
            .values()
            .filter(|held| keep(&held.task))
            .map(|held| held.task.clone())
            .collect();
        tasks.sort_by_key(|task| task.id);
        tasks
    }

    /// This process's live claims as the console shows them: running, with their owner.
    pub(super) fn held_summaries(&self) -> Vec<TaskSummary> {
        self.drop_leases(|held| held.channel.status().connected());
        let leases = lock(&self.leases);
        let summaries = leases.values().map(|held| {
            let mut summary = Self::summary(held.body.clone(), TaskState::Running);
            summary.attempts = held.task.attempt;
            summary.owner = Some(held.task.owner.clone());
            summary
        });
        summaries.collect()
    }

    pub(super) fn renew(&self, owners: &[String], lease: Duration) -> u64 {
        let lease_until = from_epoch_ms(add_ms(now_ms(), lease));
        self.drop_leases(|held| held.channel.status().connected());
        let mut leases = lock(&self.leases);
        let mut renewed = 0;
        for held in leases.values_mut() {
            if owners.contains(&held.task.owner) {
                held.task.lease_until = lease_until;
                renewed += 1;
            }
        }
        renewed
    }

    pub(super) fn running(&self, queue: &str) -> u64 {
        self.held_tasks(|task| task.queue == queue).len() as u64
    }
}
