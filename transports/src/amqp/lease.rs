//! Leases: claiming a task (a `basic.get` left unacknowledged), the claims this process holds
//! ([`Held`], by lease token), and settling them — publish what the settlement produces
//! (follow-ups, the task again, the task into the failed queue), then acknowledge — for
//! complete, fail and release, and for a batch (`settle`: its completions together); plus the
//! local views of them (owned, expired, renew, running).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicRejectOptions};
use lapin::types::DeliveryTag;

use super::session::Session;
use super::{Body, Inner, lock, pipelined};
use crate::task::{add_ms, from_epoch_ms, now_ms, to_epoch_ms};
use crate::{Attempt, Failure, FailureKind, Lease, Outcome, Result, Settlement, Submit, Task};

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
}

impl Inner {
    pub(super) async fn claim(
        self: Arc<Self>,
        queue: String,
        owner: String,
        lease: Duration,
    ) -> Result<Option<Task>> {
        let session = self.session().await?;
        self.ensure_topology(&session, &queue).await?;
        let names = self.names(&queue)?;
        for _ in 0..MAX_CLAIM_STEPS {
            let got = session
                .claim
                .basic_get(
                    names.ready.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(|e| self.error(e))?;
            let Some(message) = got else {
                return Ok(None);
            };
            let delivery = message.delivery;
            let tag = delivery.delivery_tag;
            let now = now_ms();
            let handled = async {
                let mut body: Body = match serde_json::from_slice(&delivery.data) {
                    Ok(body) => body,
                    Err(_) => {
                        // Not a task of ours: keep it, out of the way.
                        self.publish_confirmed(&session, "", &names.failed, &delivery.data)
                            .await?;
                        return Ok(None);
                    }
                };
                body.queue.clone_from(&queue);
                if body.run_at_ms > now {
                    // Back from a delay queue early: on to the next one.
                    self.publish_task(&session, &body).await?;
                    return Ok(None);
                }
                Ok(Some(body))
            }
            .await;
            match handled {
                Ok(Some(body)) => {
                    // Redelivered: its holder was lost without settling it. The attempt is
                    // handed out again, marked, for the caller to settle as a crash.
                    let lost = delivery.redelivered;
                    let token = fastrand::u64(1..1 << 63);
                    let task = Task {
                        id: body.id,
                        queue: queue.clone(),
                        payload: body.payload.clone(),
                        attempt: body.attempts + 1,
                        errors: body.errors,
                        crashes: body.crashes,
                        lease_token: token,
                        owner,
                        lease_until: from_epoch_ms(add_ms(now, lease)),
                        created_at: from_epoch_ms(body.created_at_ms),
                        lost,
                    };
                    let held = Held {
                        task: task.clone(),
                        body,
                        channel: session.claim.clone(),
                        tag,
                    };
                    lock(&self.leases).insert(token, held);
                    return Ok(Some(task));
                }
                Ok(None) => {
                    // Handled (published elsewhere): drop this copy.
                    session
                        .claim
                        .basic_ack(tag, BasicAckOptions::default())
                        .await
                        .map_err(|e| self.error(e))?;
                }
                Err(e) => {
                    // Give it back for the next claim (best effort; the broker returns it
                    // anyway when the channel closes).
                    let _ = session
                        .claim
                        .basic_reject(tag, BasicRejectOptions { requeue: true })
                        .await;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Take the lease out of the map if this process holds it and it is still good.
    fn take_lease(&self, lease: &Lease) -> Option<Held> {
        let mut leases = lock(&self.leases);
        if leases.get(&lease.token)?.task.id != lease.id {
            return None;
        }
        let held = leases.remove(&lease.token)?;
        held.channel.status().connected().then_some(held)
    }

    /// Put a lease back after a settlement failed before its acknowledgement.
    fn restore_lease(&self, token: u64, held: Held) {
        if held.channel.status().connected() {
            lock(&self.leases).insert(token, held);
        }
    }

    async fn ack(&self, held: &Held) -> Result<()> {
        held.channel
            .basic_ack(held.tag, BasicAckOptions::default())
            .await
            .map_err(|e| self.error(e))
    }

    /// Publish what a settlement produces, then acknowledge the claimed message. On a failure
    /// before the acknowledgement the lease is kept.
    async fn settle<F, Fut>(&self, lease: &Lease, publish: F) -> Result<bool>
    where
        F: FnOnce(Arc<Session>, Body, String, i64) -> Fut,
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
                Settlement::Complete { lease, submits } => {
                    let mut run = vec![(lease, submits)];
                    while let Some(Settlement::Complete { lease, submits }) =
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
        self.settle(&lease, |session, mut body, owner, now| async move {
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
            };
            body.last_error = Some(failure.reason.clone());
            body.history.push(Attempt {
                attempt: body.attempts,
                owner,
                outcome,
                reason: Some(failure.reason),
                finished_at: now,
            });
            match retry_at {
                Some(at) => {
                    body.run_at_ms = to_epoch_ms(at);
                    this.publish_task(&session, &body).await
                }
                None => {
                    let names = this.names(&body.queue)?;
                    this.ensure_topology(&session, &body.queue).await?;
                    let data = this.encode(&body)?;
                    this.publish_confirmed(&session, "", &names.failed, &data)
                        .await
                }
            }
        })
        .await
    }

    pub(super) async fn release(self: Arc<Self>, lease: Lease, reason: String) -> Result<bool> {
        let this = Arc::clone(&self);
        self.settle(&lease, |session, mut body, owner, now| async move {
            body.history.push(Attempt {
                attempt: body.attempts + 1,
                owner,
                outcome: Outcome::Released,
                reason: Some(reason),
                finished_at: now,
            });
            body.run_at_ms = now;
            this.publish_task(&session, &body).await
        })
        .await
    }

    /// This process's live claims matching `keep`, by id; forgets the stale ones.
    pub(super) fn held_tasks(&self, keep: impl Fn(&Task) -> bool) -> Vec<Task> {
        let mut leases = lock(&self.leases);
        leases.retain(|_, held| held.channel.status().connected());
        let mut tasks: Vec<Task> = leases
            .values()
            .filter(|held| keep(&held.task))
            .map(|held| held.task.clone())
            .collect();
        tasks.sort_by_key(|task| task.id);
        tasks
    }

    pub(super) fn renew(&self, owners: &[String], lease: Duration) -> u64 {
        let lease_until = from_epoch_ms(add_ms(now_ms(), lease));
        let mut leases = lock(&self.leases);
        leases.retain(|_, held| held.channel.status().connected());
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
