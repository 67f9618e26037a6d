//! Recording outcomes: the child's pending settlements sent with its next claim
//! ([`Consumer::exchange`]), mid-batch ([`Consumer::flush_once`]) or at a stop, and the
//! fallback to one settlement at a time when the transport refuses a batch, and the bounded
//! retry of a settlement while the transport is unreachable.

use std::time::Instant;

use rex_transport::{Failure, Settlement, Task, TaskId};

use super::Consumer;
use super::window::BATCH_BUDGET;

impl Consumer {
    /// Run a settlement, retrying while the transport is unreachable (bounded).
    pub(super) fn retrying<T, F, Fut>(&self, op: F) -> rex_transport::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = rex_transport::Result<T>>,
    {
        for _ in 0..8 {
            match self.rt.block_on(op()) {
                Err(e) if e.is_retryable() => {
                    self.lost_replies.set(true);
                    let delay = self.outage.borrow_mut().failed_now(&self.logger, &e);
                    std::thread::sleep(delay);
                }
                other => {
                    if other.is_ok() {
                        self.recovered();
                    }
                    return other;
                }
            }
        }
        self.rt.block_on(op())
    }

    /// Stopping: the claimed tasks not started go back (no attempt used), and every outcome
    /// is recorded.
    pub(super) fn stop(&mut self) {
        for task in self.claimed.drain(..) {
            self.pending.push(Settlement::Release {
                lease: task.lease(),
                reason: "worker stopping".into(),
            });
        }
        if let Err(e) = self.exchange(0) {
            self.logger.error(format_args!(
                "Cannot record the outcome of {} task(s) before stopping: {e}; their leases will expire",
                self.pending.len()
            ));
        }
    }

    /// Send the pending outcomes and claim up to `want` tasks (0: none) in one call. The
    /// outcomes stay pending when the transport cannot be reached; a batch the transport
    /// refuses for another reason is recorded one settlement at a time, so that one bad
    /// outcome cannot hold back the others.
    pub(super) fn exchange(&mut self, want: usize) -> rex_transport::Result<Vec<Task>> {
        if self.pending.is_empty() {
            if want == 0 {
                return Ok(Vec::new());
            }
            return self.rt.block_on(self.transport.claim_batch(
                &self.queue,
                &self.owner,
                self.lease,
                want,
            ));
        }
        let sent = self.retrying(|| {
            self.transport.settle_and_claim(
                &self.pending,
                &self.queue,
                &self.owner,
                self.lease,
                want,
            )
        });
        match sent {
            Ok((applied, next)) => {
                let pending = std::mem::take(&mut self.pending);
                self.beacon.recorded();
                self.recorded(&pending, &applied);
                self.pending_since = None;
                self.resent = false;
                Ok(next)
            }
            Err(e) if e.is_retryable() => {
                self.resent = true;
                Err(e)
            }
            Err(e) => {
                self.logger.warn(format_args!(
                    "Recording {} outcome(s) together failed ({e}); recording them one by one",
                    self.pending.len()
                ));
                self.settle_one_by_one();
                if want == 0 || !self.pending.is_empty() {
                    return Ok(Vec::new());
                }
                self.rt.block_on(self.transport.claim_batch(
                    &self.queue,
                    &self.owner,
                    self.lease,
                    want,
                ))
            }
        }
    }

    /// Mid-batch: record what is done in one attempt. On failure the outcomes wait for the
    /// end of the batch (whose exchange retries), so the batch's tasks are not held up by a
    /// retry loop before each of them.
    pub(super) fn flush_once(&mut self) {
        match self.rt.block_on(self.transport.settle(&self.pending)) {
            Ok(applied) => {
                let pending = std::mem::take(&mut self.pending);
                self.beacon.recorded();
                self.recorded(&pending, &applied);
                self.pending_since = None;
                self.resent = false;
            }
            Err(_) => {
                self.resent = true;
                self.pending_since = Some(Instant::now() + BATCH_BUDGET * 100);
            }
        }
    }

    /// Log what a batch's results mean: a stale settlement was not applied.
    fn recorded(&self, batch: &[Settlement], applied: &[bool]) {
        for (settlement, applied) in batch.iter().zip(applied) {
            if *applied {
                continue;
            }
            let id = settlement.lease().id;
            match settlement {
                // Sent again after a failure: either the first send was applied, or the task
                // was reclaimed meanwhile; the transport cannot tell which.
                Settlement::Release { .. } if self.resent => {}
                _ if self.resent => self.logger.info(format_args!(
                    "Task {id}: its outcome was not recorded again (an earlier attempt that seemed to fail recorded it, or the task was reclaimed meanwhile)"
                )),
                Settlement::Complete { .. } => self.logger.warn(format_args!(
                    "Task {id} was reclaimed while it ran; this attempt's result was discarded"
                )),
                Settlement::Fail { .. } => self.logger.warn(format_args!(
                    "Task {id} was reclaimed while it ran; this attempt's failure was discarded"
                )),
                Settlement::Release { .. } => {}
            }
        }
    }

    /// The fallback of a refused batch: each settlement alone. One the transport cannot reach
    /// stays pending (sent again later); a completion the transport refuses (its follow-ups
    /// cannot be stored) fails its task for good, as a refused completion always did.
    fn settle_one_by_one(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.pending_since = None;
        // From here each is recorded, kept pending, or given up on: none is for the master to
        // complete.
        self.beacon.recorded();
        for settlement in pending {
            let id = settlement.lease().id;
            let result = self.retrying(|| self.transport.settle(std::slice::from_ref(&settlement)));
            match (result, &settlement) {
                (Ok(applied), _) => self.recorded(std::slice::from_ref(&settlement), &applied),
                (Err(e), _) if e.is_retryable() => {
                    self.pending.push(settlement);
                    self.pending_since.get_or_insert_with(Instant::now);
                }
                // The transport answers but refuses this one completion (what it carries
                // cannot be stored): the task is failed with the transport's reason, which is
                // not the worker's error.
                (Err(e), Settlement::Complete { lease, .. }) => {
                    let reason = format!("the transport refused to record the completion: {e}");
                    self.logger
                        .error(format_args!("Task {id} is failed: {reason}"));
                    let failure = Settlement::Fail {
                        lease: *lease,
                        failure: Failure::error(reason),
                        retry_at: None,
                    };
                    if let Err(e) =
                        self.retrying(|| self.transport.settle(std::slice::from_ref(&failure)))
                    {
                        self.give_up(id, &e);
                    }
                }
                (Err(e), _) => self.give_up(id, &e),
            }
        }
    }

    /// An outcome that cannot be recorded: the task is released by the stray check before the
    /// next claim (its lease would otherwise be renewed for as long as this child lives).
    fn give_up(&self, id: TaskId, e: &rex_transport::TransportError) {
        self.logger.error(format_args!(
            "Cannot record the outcome of task {id}: {e}; it will be released to run again"
        ));
        self.lost_replies.set(true);
    }
}
