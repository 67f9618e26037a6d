//! What operators see and do beyond the delivery path (the console, `asynctask-show`,
//! `asynctask-pause`, `asynctask-masters`): the filter a listing or a bulk action applies,
//! and the heartbeat record a master publishes about itself and its children.
//!
//! The trait methods that use these types are in [`Transport`](crate::Transport):
//! `set_paused`/`paused`, `task`, `list`/`count`, `purge_failed`, `beat`/`forget_master`/
//! `masters`.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::task::{epoch_ms, epoch_ms_opt, to_epoch_ms};
use crate::{Counters, QueueStats, Result, TaskId, TaskState, TaskSummary, Transport};

/// The states a listing can ask for. `Ready` and `Delayed` split `pending` by due time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListState {
    Ready,
    Delayed,
    Running,
    Failed,
    /// Completed tasks still kept ([`Transport::prune_completed`]).
    Done,
}

impl ListState {
    pub const ALL: [ListState; 5] = [
        ListState::Ready,
        ListState::Delayed,
        ListState::Running,
        ListState::Failed,
        ListState::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListState::Ready => "ready",
            ListState::Delayed => "delayed",
            ListState::Running => "running",
            ListState::Failed => "failed",
            ListState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// The stored state these tasks are in.
    pub fn task_state(self) -> TaskState {
        match self {
            ListState::Ready | ListState::Delayed => TaskState::Pending,
            ListState::Running => TaskState::Running,
            ListState::Failed => TaskState::Failed,
            ListState::Done => TaskState::Done,
        }
    }
}

/// Which tasks a listing shows, a count counts, or a bulk action touches. Every field narrows;
/// the default matches every task the transport keeps except completed ones (which only
/// `state: Some(Done)` lists).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    pub queue: Option<String>,
    pub state: Option<ListState>,
    /// A substring (case-sensitive) of the payload's JSON text or of the last error, or the
    /// task id written in decimal.
    pub text: Option<String>,
    /// Only tasks whose [`TaskSummary::run_at`] (due time; for a failed task the time it
    /// failed) is at or after this.
    #[serde(default, with = "epoch_ms_opt")]
    pub since: Option<SystemTime>,
    /// ... and before this.
    #[serde(default, with = "epoch_ms_opt")]
    pub until: Option<SystemTime>,
}

impl TaskFilter {
    /// The failed tasks of `queue` (all queues with `None`).
    pub fn failed(queue: Option<&str>) -> Self {
        TaskFilter {
            queue: queue.map(str::to_string),
            state: Some(ListState::Failed),
            ..TaskFilter::default()
        }
    }

    /// Whether `task` matches, judged at `now` (epoch ms; ready vs delayed). The reference
    /// for every backend's query, used as is by the in-memory transport and by tests.
    pub fn matches(&self, task: &TaskSummary, now: i64) -> bool {
        let run_at = task.run_at.map(to_epoch_ms);
        let state_ok = match self.state {
            None => task.state != TaskState::Done,
            Some(ListState::Ready) => {
                task.state == TaskState::Pending && run_at.is_none_or(|at| at <= now)
            }
            Some(ListState::Delayed) => {
                task.state == TaskState::Pending && run_at.is_some_and(|at| at > now)
            }
            Some(state) => task.state == state.task_state(),
        };
        state_ok
            && self.queue.as_ref().is_none_or(|q| *q == task.queue)
            && self
                .text
                .as_ref()
                .is_none_or(|text| text_matches(text, task))
            && self
                .since
                .is_none_or(|t| run_at.is_some_and(|at| at >= to_epoch_ms(t)))
            && self
                .until
                .is_none_or(|t| run_at.is_some_and(|at| at < to_epoch_ms(t)))
    }

    /// The text filter as an id, when it is one.
    pub fn text_id(&self) -> Option<TaskId> {
        self.text.as_deref().and_then(|t| t.trim().parse().ok())
    }
}

fn text_matches(text: &str, task: &TaskSummary) -> bool {
    text.trim().parse::<TaskId>().is_ok_and(|id| id == task.id)
        || serde_json::to_string(&task.payload).is_ok_and(|json| json.contains(text))
        || task.last_error.as_ref().is_some_and(|e| e.contains(text))
}

/// The reason a cancelled attempt records (its last error).
pub const CANCELLED: &str = "cancelled by an operator";

/// The reason of the `retried` event of a failed task an operator retried.
pub const RETRIED: &str = "retried by an operator";

/// How long a cancel request is kept for the master of the attempt to act on.
pub const CANCEL_REQUEST_KEPT: Duration = Duration::from_secs(3600);

/// What [`cancel`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Cancel {
    /// It was pending: it is failed now, its attempt recorded as cancelled.
    Cancelled,
    /// It is running: its master was asked to stop it (within a few seconds).
    Requested {
        owner: Option<String>,
    },
    /// It is in a state that cannot be cancelled (failed already, or completed).
    Finished {
        state: TaskState,
    },
    NotFound,
}

/// Cancel task `id`, whatever its state: a pending one at once
/// ([`cancel_pending`](Transport::cancel_pending)), a running one through its master
/// ([`request_cancel`](Transport::request_cancel)).
pub async fn cancel<T: Transport + ?Sized>(
    transport: &T,
    id: TaskId,
    reason: &str,
) -> Result<Cancel> {
    // Tried first: a pending task needs no look-up (and a transport that cannot cancel says
    // so here). One that was not pending is looked up; a task released back to pending
    // meanwhile is tried again, a few times.
    let mut seen = TaskState::Pending;
    for _ in 0..3 {
        if transport.cancel_pending(id, reason).await? {
            return Ok(Cancel::Cancelled);
        }
        let Some(task) = transport.task(id).await? else {
            return Ok(Cancel::NotFound);
        };
        seen = task.state;
        match task.state {
            TaskState::Pending => continue,
            TaskState::Running => {
                transport.request_cancel(id, task.attempts).await?;
                return Ok(Cancel::Requested { owner: task.owner });
            }
            state => return Ok(Cancel::Finished { state }),
        }
    }
    Ok(Cancel::Finished { state: seen })
}

/// How long completed tasks are kept by default, and how many per queue at most
/// ([`Transport::prune_completed`]; the settings `asynctask_completed_retention` and
/// `asynctask_completed_kept`).
pub const COMPLETED_KEPT_FOR: Duration = Duration::from_secs(24 * 3600);
pub const COMPLETED_KEPT_PER_QUEUE: u64 = 10_000;

/// The most tasks one [`list`](crate::Transport::list) call returns.
pub const MAX_PAGE: usize = 500;

/// What a master publishes about itself, every few seconds, with an expiry: the console's
/// workers page and `asynctask-masters` read it without a connection to the master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MasterRecord {
    /// Unique per master process: `host:pid:start` (the prefix of its children's owner names).
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    #[serde(with = "epoch_ms")]
    pub started_at: SystemTime,
    /// When this record was published.
    #[serde(with = "epoch_ms")]
    pub beat_at: SystemTime,
    /// The record disappears after this time unless published again.
    #[serde(with = "epoch_ms")]
    pub expires_at: SystemTime,
    /// Whether this master runs the scheduler.
    #[serde(default)]
    pub scheduler: bool,
    pub children: Vec<ChildRecord>,
    /// What this master's children did to each queue's tasks since it started (the console's
    /// counters and histograms); absent in the records of older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub totals: Vec<QueueTotals>,
}

/// A master's [`Counters`] of one queue since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTotals {
    pub queue: String,
    #[serde(flatten)]
    pub counters: Counters,
}

impl MasterRecord {
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }
}

/// One child slot of a master.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub queue: String,
    /// The concurrency slot (0-based).
    pub slot: u32,
    /// `None` while the slot waits to restart its child.
    pub pid: Option<u32>,
    /// The task the child runs, and since when.
    pub task: Option<TaskId>,
    #[serde(default, with = "epoch_ms_opt")]
    pub task_since: Option<SystemTime>,
    /// Tasks this slot's children finished (any outcome) since the master started.
    pub processed: u64,
    /// How many times this slot's child was started again after a death.
    pub restarts: u64,
    /// Resident memory of the child, in bytes.
    pub rss_bytes: Option<u64>,
}

/// Every id `filter` matches, page by page: what a bulk action over a filter touches (the
/// console confirms [`count`](Transport::count) first; tasks that change state meanwhile are
/// skipped by the action itself, which only touches failed tasks).
pub async fn matching_ids<T: Transport + ?Sized>(
    transport: &T,
    filter: &TaskFilter,
) -> Result<Vec<TaskId>> {
    let mut ids = Vec::new();
    loop {
        let page = transport
            .list(filter, ids.last().copied(), MAX_PAGE)
            .await?;
        let full = page.len() == MAX_PAGE;
        ids.extend(page.iter().map(|task| task.id));
        if !full {
            return Ok(ids);
        }
    }
}

/// `stats` with the paused flags set, and a row for each paused queue that has no task, still
/// sorted by queue name: for backends that keep the flags apart from the tasks.
pub fn with_paused(mut stats: Vec<QueueStats>, paused: &[String]) -> Vec<QueueStats> {
    for queue in paused {
        match stats.binary_search_by(|s| s.queue.as_str().cmp(queue)) {
            Ok(i) => stats[i].paused = true,
            Err(i) => stats.insert(
                i,
                QueueStats {
                    paused: true,
                    ..QueueStats::empty(queue)
                },
            ),
        }
    }
    stats
}
