//! The memory transport's operator side: retrying failed tasks, pause flags, lookups and filtered listings, bulk
//! purges, master heartbeats, throughput history, paused schedules, completed tasks kept and
//! pruned. The [`Transport`](crate::Transport) methods in `mod.rs` call
//! these.

use std::time::SystemTime;

use super::{MemoryTransport, State};
use crate::console::CANCEL_REQUEST_KEPT;
use crate::history;
use crate::task::now_ms;
use crate::{
    HistoryRow, MasterRecord, Result, RetriedTask, Selector, TaskFilter, TaskId, TaskState,
    TaskSummary, validate_queue_name,
};

impl MemoryTransport {
    pub(super) fn retry_failed_now(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        if let Selector::Queue(queue) = selector {
            validate_queue_name(queue)?;
        }
        let now = now_ms();
        let mut state = self.state();
        let mut moved = Vec::new();
        for (id, row) in state
            .tasks
            .iter_mut()
            .filter(|(_, row)| row.state == TaskState::Failed)
        {
            let selected = match selector {
                Selector::Ids(ids) => ids.contains(id),
                Selector::Queue(queue) => row.queue == *queue,
                Selector::All => true,
            };
            if selected {
                row.state = TaskState::Pending;
                row.run_at = now;
                (row.attempts, row.errors, row.crashes) = (0, 0, 0);
                moved.push(RetriedTask {
                    id: *id,
                    queue: row.queue.clone(),
                });
            }
        }
        // Attempts count from 1 again: a cancel request names an attempt, so those of tasks
        // not running go (as on every backend).
        let State {
            tasks,
            cancel_requests,
            ..
        } = &mut *state;
        cancel_requests.retain(|(id, _), _| {
            tasks
                .get(id)
                .is_some_and(|row| row.state == TaskState::Running)
        });
        drop(state);
        if !moved.is_empty() {
            self.notify.notify_waiters();
        }
        Ok(moved)
    }

    pub(super) fn set_paused_now(&self, queue: &str, paused: bool) -> Result<bool> {
        validate_queue_name(queue)?;
        let mut state = self.state();
        let changed = if paused {
            state.paused.insert(queue.to_string())
        } else {
            state.paused.remove(queue)
        };
        drop(state);
        if changed && !paused {
            self.notify.notify_waiters();
        }
        Ok(changed)
    }

    pub(super) fn set_schedule_paused_now(&self, id: &str, paused: bool) -> Result<bool> {
        crate::validate_schedule_id(id)?;
        let mut state = self.state();
        Ok(if paused {
            state.paused_schedules.insert(id.to_string())
        } else {
            state.paused_schedules.remove(id)
        })
    }

    pub(super) fn cancel_pending_now(&self, id: TaskId, reason: &str) -> Result<bool> {
        let now = now_ms();
        let mut state = self.state();
        let Some(row) = state
            .tasks
            .get_mut(&id)
            .filter(|r| r.state == TaskState::Pending)
        else {
            return Ok(false);
        };
        row.state = TaskState::Failed;
        row.run_at = now;
        row.last_error = Some(reason.to_string());
        row.history.push(crate::Attempt {
            attempt: row.attempts,
            owner: String::new(),
            outcome: crate::Outcome::Cancelled,
            reason: Some(reason.to_string()),
            started_at: None,
            finished_at: now,
        });
        Ok(true)
    }

    /// Record the attempt `lease` names as done: the task is kept, with `result`, until
    /// pruned.
    pub(super) fn complete_with(
        &self,
        lease: &crate::Lease,
        submits: &[crate::Submit],
        result: Option<serde_json::Value>,
    ) -> Result<bool> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        let now = now_ms();
        let mut state = self.state();
        let Some(row) = state.leased(lease) else {
            return Ok(false);
        };
        row.settle(TaskState::Done, crate::Outcome::Done, None, now);
        row.run_at = now;
        row.result = result;
        for submit in submits {
            state.insert(&submit.queue, submit.payload.clone(), now, now);
        }
        drop(state);
        if !submits.is_empty() {
            self.notify.notify_waiters();
        }
        Ok(true)
    }

    /// One settlement at a time, as `batch::settle_each`, but keeping each completion's result.
    pub(super) async fn settle_now(&self, batch: &[crate::Settlement]) -> Result<Vec<bool>> {
        crate::batch::validate_submits(batch)?;
        let mut applied = Vec::with_capacity(batch.len());
        for settlement in batch {
            applied.push(match settlement {
                crate::Settlement::Complete {
                    lease,
                    submits,
                    result,
                } => self.complete_with(lease, submits, result.clone())?,
                crate::Settlement::Fail {
                    lease,
                    failure,
                    retry_at,
                } => crate::Transport::fail(self, lease, failure, *retry_at).await?,
                crate::Settlement::Release { lease, reason } => {
                    crate::Transport::release(self, lease, reason).await?
                }
            });
        }
        Ok(applied)
    }

    pub(super) fn prune_completed_now(&self, before: i64, keep_per_queue: u64) -> Result<u64> {
        let mut state = self.state();
        // Newest first per queue: what a queue's cap keeps.
        let mut done: Vec<(String, i64, TaskId)> = state
            .tasks
            .iter()
            .filter(|(_, row)| row.state == TaskState::Done)
            .map(|(&id, row)| (row.queue.clone(), row.run_at, id))
            .collect();
        done.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
        let mut pruned = 0;
        let mut kept_in_queue = 0;
        for (i, (queue, finished, id)) in done.iter().enumerate() {
            kept_in_queue = if i > 0 && done[i - 1].0 == *queue {
                kept_in_queue + 1
            } else {
                1
            };
            if *finished < before || kept_in_queue > keep_per_queue {
                state.tasks.remove(id);
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    pub(super) fn request_cancel_now(&self, id: TaskId, attempt: u32) -> Result<()> {
        let now = now_ms();
        let kept = i64::try_from(CANCEL_REQUEST_KEPT.as_millis()).unwrap_or(i64::MAX);
        let mut state = self.state();
        state.cancel_requests.retain(|_, at| *at >= now - kept);
        state.cancel_requests.insert((id, attempt), now);
        Ok(())
    }

    pub(super) fn cancel_requests_now(&self) -> Result<Vec<(TaskId, u32)>> {
        let now = now_ms();
        let kept = i64::try_from(CANCEL_REQUEST_KEPT.as_millis()).unwrap_or(i64::MAX);
        let state = self.state();
        Ok(state
            .cancel_requests
            .iter()
            .filter(|(_, at)| **at >= now - kept)
            .map(|(key, _)| *key)
            .collect())
    }

    pub(super) fn paused_now(&self) -> Result<Vec<String>> {
        Ok(self.state().paused.iter().cloned().collect())
    }

    pub(super) fn task_now(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        Ok(self.state().tasks.get(&id).map(|row| row.summary(id)))
    }

    pub(super) fn list_now(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        let now = now_ms();
        let state = self.state();
        let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(state
            .tasks
            .range((start, std::ops::Bound::Unbounded))
            .map(|(&id, row)| row.summary(id))
            .filter(|task| filter.matches(task, now))
            .take(limit.min(crate::console::MAX_PAGE))
            .collect())
    }

    pub(super) fn count_now(&self, filter: &TaskFilter) -> Result<u64> {
        let now = now_ms();
        let state = self.state();
        Ok(state
            .tasks
            .iter()
            .filter(|(id, row)| filter.matches(&row.summary(**id), now))
            .count() as u64)
    }

    pub(super) fn purge_failed_now(&self, ids: &[TaskId]) -> Result<u64> {
        let mut state = self.state();
        let mut purged = 0;
        for id in ids {
            if state
                .tasks
                .get(id)
                .is_some_and(|row| row.state == TaskState::Failed)
            {
                state.tasks.remove(id);
                purged += 1;
            }
        }
        Ok(purged)
    }

    pub(super) fn beat_now(&self, record: &MasterRecord) -> Result<()> {
        let mut state = self.state();
        state.masters.insert(record.id.clone(), record.clone());
        Ok(())
    }

    pub(super) fn forget_master_now(&self, id: &str) -> Result<()> {
        self.state().masters.remove(id);
        Ok(())
    }

    pub(super) fn masters_now(&self) -> Result<Vec<MasterRecord>> {
        let now = SystemTime::now();
        let mut state = self.state();
        state.masters.retain(|_, record| record.is_live(now));
        Ok(state.masters.values().cloned().collect())
    }

    pub(super) fn record_history_now(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        history::check_rows(rows)?;
        let oldest = history::minute_of(SystemTime::now() - history::HISTORY_KEPT);
        let kept_since = now_ms().saturating_sub(history::HISTORY_KEPT.as_millis() as i64);
        let mut state = self.state();
        state.history.retain(|row| row.minute >= oldest);
        state.recordings.retain(|_, at| *at >= kept_since);
        if state
            .recordings
            .insert(recording.to_string(), now_ms())
            .is_some()
        {
            return Ok(()); // recorded already
        }
        history::merge(&mut state.history, rows.iter().cloned());
        Ok(())
    }

    pub(super) fn history_now(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        let state = self.state();
        Ok(state
            .history
            .iter()
            .filter(|row| history::wanted(row, queue, since))
            .cloned()
            .collect())
    }
}
