//! The in-process transport (`memory:`): the same contract as SQLite, kept in a map. Tasks
//! are lost with the process and invisible to others, so it suits library use and tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::task::{
    add_ms, from_epoch_ms, now_ms, schedule_key_prefix, schedule_key_time, to_epoch_ms,
};
mod console;
mod events;

use crate::{
    Attempt, EventFeed, Failure, FailureKind, HistoryRow, Lease, MasterRecord, Outcome, Payload,
    PurgeWhich, QueueCounts, QueueStats, Result, RetriedTask, Selector, Settlement, Submit,
    SubmitOptions, Task, TaskEvent, TaskFilter, TaskId, TaskState, TaskSummary, Transport,
    validate_queue_name,
};

/// A transport living in this process's memory.
#[derive(Default)]
pub struct MemoryTransport {
    state: Mutex<State>,
    /// Wakes `wait`ers whenever a task may have become ready.
    notify: Notify,
    events: events::Hub,
}

#[derive(Default)]
struct State {
    last_id: TaskId,
    /// Ordered by id, i.e. by submission: the FIFO order of claims.
    tasks: BTreeMap<TaskId, Row>,
    /// Key → when it was used (epoch ms).
    idempotency_keys: HashMap<String, i64>,
    paused: BTreeSet<String>,
    paused_schedules: BTreeSet<String>,
    /// (task, attempt) → when requested (epoch ms).
    cancel_requests: BTreeMap<(TaskId, u32), i64>,
    masters: BTreeMap<String, MasterRecord>,
    /// Sorted by queue, then minute.
    history: Vec<HistoryRow>,
    /// Names of the history recordings made → when (epoch ms).
    recordings: HashMap<String, i64>,
}

/// One task; times are epoch milliseconds like the SQLite columns, so both behave alike.
struct Row {
    queue: String,
    payload: Payload,
    state: TaskState,
    run_at: i64,
    created_at: i64,
    attempts: u32,
    errors: u32,
    crashes: u32,
    lease_token: u64,
    owner: String,
    lease_until: i64,
    last_error: Option<String>,
    history: Vec<Attempt>,
    /// When the current (or last) attempt was claimed.
    started_at: i64,
    result: Option<serde_json::Value>,
}

impl Row {
    fn is_ready(&self, queue: &str, now: i64) -> bool {
        self.queue == queue && self.state == TaskState::Pending && self.run_at <= now
    }

    fn task(&self, id: TaskId) -> Task {
        Task {
            id,
            queue: self.queue.clone(),
            payload: self.payload.clone(),
            attempt: self.attempts,
            errors: self.errors,
            crashes: self.crashes,
            lease_token: self.lease_token,
            owner: self.owner.clone(),
            lease_until: from_epoch_ms(self.lease_until),
            created_at: from_epoch_ms(self.created_at),
            lost: false,
            unwitnessed_returns: 0,
        }
    }

    fn summary(&self, id: TaskId) -> TaskSummary {
        TaskSummary {
            id,
            queue: self.queue.clone(),
            state: self.state,
            payload: self.payload.clone(),
            attempts: self.attempts,
            errors: self.errors,
            crashes: self.crashes,
            last_error: self.last_error.clone(),
            history: self.history.clone(),
            created_at: from_epoch_ms(self.created_at),
            run_at: Some(from_epoch_ms(self.run_at)),
            owner: (self.state == TaskState::Running).then(|| self.owner.clone()),
            result: self.result.clone(),
        }
    }

    /// Leave `running`, recording how the attempt ended.
    fn settle(&mut self, state: TaskState, outcome: Outcome, reason: Option<&str>, now: i64) {
        self.history.push(Attempt {
            attempt: self.attempts,
            owner: std::mem::take(&mut self.owner),
            outcome,
            reason: reason.map(str::to_string),
            started_at: Some(self.started_at),
            finished_at: now,
        });
        self.state = state;
    }
}

impl State {
    fn insert(&mut self, queue: &str, payload: Payload, run_at: i64, now: i64) -> TaskId {
        self.last_id += 1;
        let row = Row {
            queue: queue.to_string(),
            payload,
            state: TaskState::Pending,
            run_at,
            created_at: now,
            attempts: 0,
            errors: 0,
            crashes: 0,
            lease_token: 0,
            owner: String::new(),
            lease_until: 0,
            last_error: None,
            history: Vec::new(),
            started_at: 0,
            result: None,
        };
        self.tasks.insert(self.last_id, row);
        self.last_id
    }

    /// The running task `lease` names, if the lease is current.
    fn leased(&mut self, lease: &Lease) -> Option<&mut Row> {
        self.tasks
            .get_mut(&lease.id)
            .filter(|row| row.state == TaskState::Running && row.lease_token == lease.token)
    }

    fn running(&self) -> impl Iterator<Item = (&TaskId, &Row)> {
        self.tasks
            .iter()
            .filter(|(_, row)| row.state == TaskState::Running)
    }
}

impl MemoryTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation below is completed before anything can panic, so a poisoned state is
        // still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Transport for MemoryTransport {
    fn describe(&self) -> String {
        "memory:".to_string()
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let mut state = self.state();
        if let Some(key) = &opts.idempotency_key
            && state.idempotency_keys.insert(key.clone(), now).is_some()
        {
            return Ok(None);
        }
        let id = state.insert(queue, payload, opts.run_at.map_or(now, to_epoch_ms), now);
        drop(state);
        self.notify.notify_waiters();
        Ok(Some(id))
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let mut state = self.state();
        if state.paused.contains(queue) {
            return Ok(None);
        }
        // The earliest due task, then submission order: the claim order of every transport.
        let Some((&id, row)) = state
            .tasks
            .iter_mut()
            .filter(|(_, row)| row.is_ready(queue, now))
            .min_by_key(|(id, row)| (row.run_at, **id))
        else {
            return Ok(None);
        };
        row.state = TaskState::Running;
        row.attempts += 1;
        row.lease_token += 1;
        row.owner = owner.to_string();
        row.lease_until = add_ms(now, lease);
        row.started_at = now;
        Ok(Some(row.task(id)))
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        self.complete_with(lease, submits, None)
    }

    fn keeps_completed(&self) -> bool {
        true
    }

    async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        self.settle_now(batch).await
    }

    async fn prune_completed(&self, before: SystemTime, keep_per_queue: u64) -> Result<u64> {
        self.prune_completed_now(to_epoch_ms(before), keep_per_queue)
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let now = now_ms();
        let mut state = self.state();
        let Some(row) = state.leased(lease) else {
            return Ok(false);
        };
        let outcome = match failure.kind {
            FailureKind::Error => {
                row.errors += 1;
                Outcome::Error
            }
            FailureKind::Crash => {
                row.crashes += 1;
                Outcome::Crash
            }
            FailureKind::Cancelled => Outcome::Cancelled,
        };
        row.last_error = Some(failure.reason.clone());
        match retry_at {
            Some(t) => {
                row.settle(TaskState::Pending, outcome, Some(&failure.reason), now);
                row.run_at = to_epoch_ms(t);
                drop(state);
                self.notify.notify_waiters();
            }
            None => {
                row.settle(TaskState::Failed, outcome, Some(&failure.reason), now);
                // A failed task's run_at is the time it failed (what listings filter on).
                row.run_at = now;
            }
        }
        Ok(true)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let now = now_ms();
        let mut state = self.state();
        let Some(row) = state.leased(lease) else {
            return Ok(false);
        };
        row.settle(TaskState::Pending, Outcome::Released, Some(reason), now);
        row.attempts = row.attempts.saturating_sub(1);
        // It keeps its place: it was due.
        row.run_at = row.run_at.min(now);
        drop(state);
        self.notify.notify_waiters();
        Ok(true)
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        let state = self.state();
        Ok(state
            .running()
            .filter(|(_, row)| row.owner == owner)
            .map(|(&id, row)| row.task(id))
            .collect())
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        let now = to_epoch_ms(now);
        let state = self.state();
        Ok(state
            .running()
            .filter(|(_, row)| row.lease_until < now)
            .map(|(&id, row)| row.task(id))
            .collect())
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        let until = add_ms(now_ms(), lease);
        let mut state = self.state();
        let mut renewed = 0;
        for row in state.tasks.values_mut() {
            if row.state == TaskState::Running && owners.contains(&row.owner) {
                row.lease_until = until;
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let state = self.state();
        let mut counts = QueueCounts::default();
        for row in state.tasks.values().filter(|row| row.queue == queue) {
            match row.state {
                TaskState::Pending if row.run_at <= now => counts.ready += 1,
                TaskState::Pending => {
                    counts.delayed += 1;
                    let run_at = from_epoch_ms(row.run_at);
                    counts.next_run_at = Some(counts.next_run_at.map_or(run_at, |t| t.min(run_at)));
                }
                TaskState::Running => counts.running += 1,
                TaskState::Failed => counts.failed += 1,
                TaskState::Done => {}
            }
        }
        Ok(counts)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = now_ms();
        let state = self.state();
        let mut stats = BTreeMap::<&str, QueueStats>::new();
        for row in state
            .tasks
            .values()
            .filter(|row| row.state != TaskState::Done)
        {
            let s = stats
                .entry(&row.queue)
                .or_insert_with(|| QueueStats::empty(&row.queue));
            match row.state {
                TaskState::Pending => {
                    s.pending += 1;
                    s.delayed += u64::from(row.run_at > now);
                    let age = u64::try_from(now - row.created_at).unwrap_or(0);
                    s.oldest_pending_ms = Some(s.oldest_pending_ms.map_or(age, |a| a.max(age)));
                }
                TaskState::Running => s.running += 1,
                TaskState::Failed => s.failed += 1,
                TaskState::Done => {}
            }
        }
        let paused: Vec<String> = state.paused.iter().cloned().collect();
        Ok(crate::console::with_paused(
            stats.into_values().collect(),
            &paused,
        ))
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        let state = self.state();
        Ok(state
            .tasks
            .iter()
            .filter(|(_, row)| {
                row.state == TaskState::Failed && queue.is_none_or(|q| row.queue == q)
            })
            .map(|(&id, row)| row.summary(id))
            .collect())
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        self.retry_failed_now(selector)
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        let target = match which {
            PurgeWhich::Failed => TaskState::Failed,
            PurgeWhich::Pending => TaskState::Pending,
        };
        let mut state = self.state();
        let before = state.tasks.len();
        state
            .tasks
            .retain(|_, row| !(row.queue == queue && row.state == target));
        Ok((before - state.tasks.len()) as u64)
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let prefix = schedule_key_prefix(schedule);
        let state = self.state();
        Ok(state
            .idempotency_keys
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .max()
            .and_then(|k| schedule_key_time(k)))
    }

    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        let mut state = self.state();
        // The latest key of each schedule is kept: keys sort by schedule, then by time.
        let mut latest: std::collections::HashMap<String, String> = Default::default();
        for key in state
            .idempotency_keys
            .keys()
            .filter(|k| k.starts_with("schedule:"))
        {
            let schedule = key[..key.len().saturating_sub(16)].to_string();
            let newest = latest.entry(schedule).or_insert_with(|| key.clone());
            if key > newest {
                *newest = key.clone();
            }
        }
        let keep: std::collections::HashSet<String> = latest.into_values().collect();
        let before_len = state.idempotency_keys.len();
        let before_ms = to_epoch_ms(before);
        state.idempotency_keys.retain(|key, used| {
            if key.starts_with("manual:") {
                return *used >= before_ms;
            }
            keep.contains(key)
                || !key.starts_with("schedule:")
                || schedule_key_time(key).is_none_or(|at| at >= before)
        });
        Ok((before_len - state.idempotency_keys.len()) as u64)
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        self.set_paused_now(queue, paused)
    }

    async fn paused(&self) -> Result<Vec<String>> {
        self.paused_now()
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        self.task_now(id)
    }

    async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        self.list_now(filter, after, limit)
    }

    async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        self.count_now(filter)
    }

    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        self.purge_failed_now(ids)
    }

    async fn beat(&self, record: &MasterRecord) -> Result<()> {
        self.beat_now(record)
    }

    async fn forget_master(&self, id: &str) -> Result<()> {
        self.forget_master_now(id)
    }

    async fn masters(&self) -> Result<Vec<MasterRecord>> {
        self.masters_now()
    }

    async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        self.cancel_pending_now(id, reason)
    }

    async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        self.request_cancel_now(id, attempt)
    }

    async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        self.cancel_requests_now()
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        self.set_schedule_paused_now(id, paused)
    }

    async fn paused_schedules(&self) -> Result<Vec<String>> {
        Ok(self.state().paused_schedules.iter().cloned().collect())
    }

    async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        self.record_history_now(recording, rows)
    }

    async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        self.history_now(queue, since)
    }

    async fn publish_events(&self, events: &[TaskEvent]) -> Result<()> {
        self.events.publish(events);
        Ok(())
    }

    async fn followed(&self) -> Result<bool> {
        Ok(self.events.followed())
    }

    async fn follow_events(&self) -> Result<EventFeed> {
        Ok(self.events.follow())
    }

    /// Returns when a task is ready in `queue`, when anything may have made one ready, or
    /// after `timeout`.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        let deadline = Instant::now() + timeout;
        loop {
            // Registered before the check, so a submit right after it still wakes us up.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now_ms();
            let next_run_at = {
                let state = self.state();
                // A paused queue has nothing ready until it is resumed (which notifies).
                let paused = state.paused.contains(queue);
                let pending = state
                    .tasks
                    .values()
                    .filter(|row| row.queue == queue && row.state == TaskState::Pending);
                pending.map(|row| row.run_at).min().filter(|_| !paused)
            };
            if next_run_at.is_some_and(|t| t <= now) || Instant::now() >= deadline {
                return Ok(());
            }
            // A delayed task becomes ready without any notification: sleep until then at most.
            let wake = next_run_at.map_or(deadline, |t| {
                deadline.min(
                    Instant::now() + Duration::from_millis(u64::try_from(t - now).unwrap_or(0)),
                )
            });
            tokio::select! {
                _ = notified => return Ok(()),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}
