//! [`tap`]: the transport wrapper that publishes the lifecycle events of the calls made
//! through it.
//!
//! Events come from the calls themselves, after they succeed: a submit's ids, a claim's
//! tasks, a settlement the transport applied (a stale lease is no event). A lease names only
//! a task id, so the wrapper remembers the queue and attempt of the tasks it saw claimed or
//! listed (`owned_by`, `expired`) until they are settled; a child settles only what it
//! claimed, a master only what it listed.
//!
//! Publishing costs a round trip per call, so it happens only while someone follows: the
//! wrapper asks [`Transport::followed`] at most every [`FOLLOW_CHECK`]. Not following costs
//! a map insert and removal per task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{EventFeed, EventKind, FOLLOW_CHECK, TaskEvent};
use crate::console::{MasterRecord, TaskFilter};
use crate::history::HistoryRow;
use crate::task::{now_ms, to_epoch_ms};
use crate::{
    Failure, FailureKind, Lease, Payload, PurgeWhich, QueueCounts, QueueStats, Result, RetriedTask,
    Selector, Settlement, Submit, SubmitOptions, Task, TaskId, TaskSummary, Transport,
};

/// Tasks remembered at most; beyond, what is remembered is dropped (the queues of those tasks
/// are then looked up when they are settled, see `Tap::queue_of`).
const HELD_MAX: usize = 100_000;

/// How long a caller waits for the answer to "is anyone following?" (then: no one).
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a caller waits for its events to be published (then they are dropped): the
/// events never hold up the work for long, even when their channel is slow.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Wrap `inner` so that the calls made through it publish their events.
pub fn tap(inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
    Arc::new(Tap {
        inner,
        checked_at: AtomicI64::new(i64::MIN),
        followed: AtomicBool::new(false),
        held: Mutex::new(HashMap::new()),
    })
}

struct Tap {
    inner: Arc<dyn Transport>,
    /// When `followed` was last asked (ms), and its answer.
    checked_at: AtomicI64,
    followed: AtomicBool,
    /// Task id → (queue, attempt) of the tasks claimed or listed through this wrapper.
    held: Mutex<HashMap<TaskId, (Arc<str>, u32)>>,
}

impl Tap {
    /// Whether to publish now; asks the backend at most every [`FOLLOW_CHECK`].
    async fn followed(&self) -> bool {
        let now = now_ms();
        let last = self.checked_at.load(Ordering::Relaxed);
        let every = FOLLOW_CHECK.as_millis() as i64;
        if now.saturating_sub(last) < every
            || self
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return self.followed.load(Ordering::Relaxed);
        }
        // A backend that cannot say, or cannot be reached, is not followed: the events are
        // best effort, the caller's work is not.
        let on = matches!(
            tokio::time::timeout(CHECK_TIMEOUT, self.inner.followed()).await,
            Ok(Ok(true))
        );
        self.followed.store(on, Ordering::Relaxed);
        on
    }

    async fn publish(&self, events: Vec<TaskEvent>) {
        if !events.is_empty() {
            let _ = tokio::time::timeout(PUBLISH_TIMEOUT, self.inner.publish_events(&events)).await;
        }
    }

    fn remember(&self, tasks: &[Task]) {
        if tasks.is_empty() {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() + tasks.len() > HELD_MAX {
            held.clear();
        }
        let mut last: Option<Arc<str>> = None;
        for task in tasks {
            // A claim's tasks share their queue: one allocation for all of them.
            let queue = match &last {
                Some(q) if **q == *task.queue => Arc::clone(q),
                _ => Arc::from(task.queue.as_str()),
            };
            last = Some(Arc::clone(&queue));
            held.insert(task.id, (queue, task.attempt));
        }
    }

    /// Forget the settled tasks; returns what was known of each (None: never seen here).
    fn forget(&self, leases: impl Iterator<Item = TaskId>) -> Vec<Option<(Arc<str>, u32)>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        leases.map(|id| held.remove(&id)).collect()
    }

    fn started(tasks: &[Task]) -> Vec<TaskEvent> {
        let at = now_ms();
        tasks
            .iter()
            .map(|task| {
                let mut e = TaskEvent::new(EventKind::Started, &task.queue, Some(task.id), at);
                e.attempt = Some(task.attempt);
                e.owner = Some(task.owner.clone());
                e
            })
            .collect()
    }

    /// The queue of a task this wrapper never saw (an operator's cancel): looked up, only
    /// while followed. Its attempt is left out: after the change, the task's count may no
    /// longer name the attempt concerned (a release gives it back). A task already gone (a
    /// completion where completed tasks are not kept) has no event.
    async fn queue_of(&self, id: TaskId) -> Option<String> {
        match self.inner.task(id).await {
            Ok(Some(summary)) => Some(summary.queue),
            _ => None,
        }
    }

    /// The events of the applied settlements of `batch`.
    async fn settled(&self, batch: &[Settlement], applied: &[bool]) -> Vec<TaskEvent> {
        let known = self.forget(batch.iter().map(|s| s.lease().id));
        if !self.followed().await {
            return Vec::new();
        }
        let at = now_ms();
        let mut events = Vec::new();
        for ((settlement, applied), known) in batch.iter().zip(applied).zip(known) {
            if !applied {
                continue;
            }
            let id = settlement.lease().id;
            let (queue, attempt) = match known {
                Some((queue, attempt)) => (queue.to_string(), Some(attempt)),
                None => match self.queue_of(id).await {
                    Some(queue) => (queue, None),
                    None => continue,
                },
            };
            let mut event = settlement_event(settlement, &queue, at);
            event.attempt = attempt;
            if let Settlement::Complete { submits, .. } = settlement {
                events.push(event);
                events.extend(submits.iter().map(|submit| {
                    let mut e = TaskEvent::new(EventKind::Submitted, &submit.queue, None, at);
                    e.parent = Some(id);
                    e
                }));
            } else {
                events.push(event);
            }
        }
        events
    }
}

fn settlement_event(settlement: &Settlement, queue: &str, at: i64) -> TaskEvent {
    let id = Some(settlement.lease().id);
    match settlement {
        Settlement::Complete { .. } => TaskEvent::new(EventKind::Succeeded, queue, id, at),
        Settlement::Fail {
            failure, retry_at, ..
        } => {
            let kind = match (failure.kind, retry_at) {
                (FailureKind::Crash, _) => EventKind::Crashed,
                (FailureKind::Cancelled, _) => EventKind::Cancelled,
                (FailureKind::Error, Some(_)) => EventKind::Retried,
                (FailureKind::Error, None) => EventKind::Failed,
            };
            let mut e = TaskEvent::new(kind, queue, id, at);
            e.reason = Some(failure.reason.clone());
            e.retry_at = retry_at.map(to_epoch_ms);
            e
        }
        Settlement::Release { reason, .. } => {
            let mut e = TaskEvent::new(EventKind::Released, queue, id, at);
            e.reason = Some(reason.clone());
            e
        }
    }
}

#[async_trait::async_trait]
impl Transport for Tap {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
    fn leases_held_by_broker(&self) -> bool {
        self.inner.leases_held_by_broker()
    }
    fn keeps_completed(&self) -> bool {
        self.inner.keeps_completed()
    }
    fn needs_constant_io(&self) -> bool {
        self.inner.needs_constant_io()
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        let id = self.inner.submit(queue, payload, opts).await?;
        if let Some(id) = id
            && self.followed().await
        {
            self.publish(vec![TaskEvent::new(
                EventKind::Submitted,
                queue,
                Some(id),
                now_ms(),
            )])
            .await;
        }
        Ok(id)
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        let task = self.inner.claim(queue, owner, lease).await?;
        if let Some(task) = &task {
            self.remember(std::slice::from_ref(task));
            if self.followed().await {
                self.publish(Self::started(std::slice::from_ref(task)))
                    .await;
            }
        }
        Ok(task)
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        let applied = self.inner.complete(lease, submits).await?;
        let settlement = Settlement::Complete {
            lease: *lease,
            submits: submits.to_vec(),
            result: None,
        };
        let events = self.settled(&[settlement], &[applied]).await;
        self.publish(events).await;
        Ok(applied)
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let applied = self.inner.fail(lease, failure, retry_at).await?;
        let settlement = Settlement::Fail {
            lease: *lease,
            failure: failure.clone(),
            retry_at,
        };
        let events = self.settled(&[settlement], &[applied]).await;
        self.publish(events).await;
        Ok(applied)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let applied = self.inner.release(lease, reason).await?;
        let settlement = Settlement::Release {
            lease: *lease,
            reason: reason.to_string(),
        };
        let events = self.settled(&[settlement], &[applied]).await;
        self.publish(events).await;
        Ok(applied)
    }

    async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        let tasks = self.inner.claim_batch(queue, owner, lease, max).await?;
        self.remember(&tasks);
        if !tasks.is_empty() && self.followed().await {
            self.publish(Self::started(&tasks)).await;
        }
        Ok(tasks)
    }

    async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        let applied = self.inner.settle(batch).await?;
        let events = self.settled(batch, &applied).await;
        self.publish(events).await;
        Ok(applied)
    }

    async fn settle_and_claim(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        let (applied, tasks) = self
            .inner
            .settle_and_claim(batch, queue, owner, lease, max)
            .await?;
        let mut events = self.settled(batch, &applied).await;
        self.remember(&tasks);
        if !tasks.is_empty() && self.followed().await {
            events.extend(Self::started(&tasks));
        }
        self.publish(events).await;
        Ok((applied, tasks))
    }

    async fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        let ids = self.inner.submit_batch(tasks, run_at).await?;
        // Ids line up with `tasks`, except where an idempotency key made a submit a no-op
        // (fewer ids): then each id's queue is not known, and the event is left out.
        if ids.len() == tasks.len() && self.followed().await {
            let at = now_ms();
            let events = tasks
                .iter()
                .zip(&ids)
                .map(|(task, id)| TaskEvent::new(EventKind::Submitted, &task.queue, Some(*id), at))
                .collect();
            self.publish(events).await;
        }
        Ok(ids)
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        let tasks = self.inner.owned_by(owner).await?;
        self.remember(&tasks);
        Ok(tasks)
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        let tasks = self.inner.expired(now).await?;
        self.remember(&tasks);
        Ok(tasks)
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        self.inner.renew(owners, lease).await
    }
    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        self.inner.counts(queue).await
    }
    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.inner.stats().await
    }
    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        self.inner.failed(queue).await
    }
    async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        let moved = self.inner.retry_failed(selector).await?;
        if !moved.is_empty() && self.followed().await {
            let at = now_ms();
            let events = moved
                .iter()
                .map(|t| {
                    let mut e = TaskEvent::new(EventKind::Retried, &t.queue, Some(t.id), at);
                    e.reason = Some(crate::console::RETRIED.to_string());
                    e.retry_at = Some(at);
                    e
                })
                .collect();
            self.publish(events).await;
        }
        Ok(moved)
    }
    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        self.inner.purge(queue, which).await
    }
    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        self.inner.last_fire(schedule).await
    }
    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        self.inner.prune_schedule_keys(before).await
    }
    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        self.inner.set_paused(queue, paused).await
    }
    async fn paused(&self) -> Result<Vec<String>> {
        self.inner.paused().await
    }

    async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        let cancelled = self.inner.cancel_pending(id, reason).await?;
        if cancelled
            && self.followed().await
            && let Some(queue) = self.queue_of(id).await
        {
            let mut e = TaskEvent::new(EventKind::Cancelled, &queue, Some(id), now_ms());
            e.reason = Some(reason.to_string());
            self.publish(vec![e]).await;
        }
        Ok(cancelled)
    }

    async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        self.inner.request_cancel(id, attempt).await
    }
    async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        self.inner.cancel_requests().await
    }
    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        self.inner.set_schedule_paused(id, paused).await
    }
    async fn paused_schedules(&self) -> Result<Vec<String>> {
        self.inner.paused_schedules().await
    }
    async fn schedule_paused(&self, id: &str) -> Result<bool> {
        self.inner.schedule_paused(id).await
    }
    async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        self.inner.task(id).await
    }
    async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        self.inner.list(filter, after, limit).await
    }
    async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        self.inner.count(filter).await
    }
    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        self.inner.purge_failed(ids).await
    }
    async fn beat(&self, record: &MasterRecord) -> Result<()> {
        self.inner.beat(record).await
    }
    async fn forget_master(&self, id: &str) -> Result<()> {
        self.inner.forget_master(id).await
    }
    async fn masters(&self) -> Result<Vec<MasterRecord>> {
        self.inner.masters().await
    }
    async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        self.inner.record_history(recording, rows).await
    }
    async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        self.inner.history(queue, since).await
    }
    fn history_interval(&self) -> Duration {
        self.inner.history_interval()
    }
    async fn prune_completed(&self, before: SystemTime, keep_per_queue: u64) -> Result<u64> {
        self.inner.prune_completed(before, keep_per_queue).await
    }
    async fn publish_events(&self, events: &[TaskEvent]) -> Result<()> {
        self.inner.publish_events(events).await
    }
    async fn followed(&self) -> Result<bool> {
        self.inner.followed().await
    }
    async fn follow_events(&self) -> Result<EventFeed> {
        self.inner.follow_events().await
    }
    async fn maintain(&self) -> Result<Option<String>> {
        self.inner.maintain().await
    }
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        self.inner.wait(queue, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryTransport;

    /// A memory transport that says it is followed and keeps what is published.
    fn tapped() -> (Arc<dyn Transport>, Arc<MemoryTransport>) {
        let memory = Arc::new(MemoryTransport::new());
        (tap(memory.clone()), memory)
    }

    #[tokio::test]
    async fn nothing_is_published_while_nobody_follows() {
        let (t, memory) = tapped();
        t.submit("qq", Payload::new(), &SubmitOptions::default())
            .await
            .unwrap();
        assert_eq!(memory.published_event_batches(), 0);
    }

    #[tokio::test]
    async fn a_settlement_of_a_task_claimed_elsewhere_is_looked_up() {
        let (t, memory) = tapped();
        let mut feed = t.follow_events().await.unwrap();
        // Claimed through the bare transport: the wrapper never saw it.
        memory
            .submit("qq", Payload::new(), &SubmitOptions::default())
            .await
            .unwrap();
        let task = memory
            .claim("qq", "o", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(t.complete(&task.lease(), &[]).await.unwrap());
        let events = feed.recv().await.unwrap().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, EventKind::Succeeded);
        assert_eq!(events[0].queue, "qq");
        assert_eq!(events[0].attempt, None, "not known here");
        // A stale settlement is no event.
        assert!(!t.complete(&task.lease(), &[]).await.unwrap());
        t.submit("qq", Payload::new(), &SubmitOptions::default())
            .await
            .unwrap();
        let events = feed.recv().await.unwrap().unwrap();
        assert_eq!(events[0].event, EventKind::Submitted);
    }
}
