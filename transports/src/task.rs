//! The data that crosses the [`Transport`](crate::Transport) contract, and the epoch-time
//! encoding backends store it with. The validation rules every backend shares are in
//! `validate.rs` and the keys of schedule fires in `schedule.rs`; both are re-exported here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::schedule::{
    manual_run_key, schedule_key, schedule_key_prefix, schedule_key_time, validate_schedule_id,
};
pub use crate::validate::{
    EXCERPT, MAX_PAYLOAD_DEPTH, MAX_QUEUE_NAME, RESERVED_KEY, check_payload, check_size, excerpt,
    has_reserved_key, normalize_payload, validate_queue_name,
};

/// Task identifier, unique within one transport.
pub type TaskId = i64;

/// A task payload: always a JSON object. `serde_json::Map` keeps keys sorted, which gives the
/// sorted-keys encoding the original promised (at every depth, not only the top level).
pub type Payload = serde_json::Map<String, Value>;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Pending,
    Running,
    Failed,
    Done,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Failed => "failed",
            TaskState::Done => "done",
        }
    }

    /// Inverse of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        [
            TaskState::Pending,
            TaskState::Running,
            TaskState::Failed,
            TaskState::Done,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// Options for [`Transport::submit`](crate::Transport::submit).
#[derive(Clone, Debug, Default)]
pub struct SubmitOptions {
    /// Not ready before this time (delayed task).
    pub run_at: Option<SystemTime>,
    /// At most one task is ever enqueued per key on a transport (scheduler fires).
    pub idempotency_key: Option<String>,
}

/// A task enqueued as part of a completion (a worker's requeue/submit calls).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Submit {
    pub queue: String,
    pub payload: Payload,
}

/// The fencing handle of one claim: settlements must quote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    pub id: TaskId,
    pub token: u64,
}

/// A claimed (running) task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub queue: String,
    pub payload: Payload,
    /// 1 for the first attempt; includes this one.
    pub attempt: u32,
    /// Earlier attempts that ended in an error or panic.
    pub errors: u32,
    /// Earlier attempts that ended with the worker process dying (signal, exit, timeout, lost lease).
    pub crashes: u32,
    pub lease_token: u64,
    pub owner: String,
    #[serde(with = "epoch_ms")]
    pub lease_until: SystemTime,
    #[serde(with = "epoch_ms")]
    pub created_at: SystemTime,
    /// This attempt was already handed out once and its holder vanished without settling it
    /// (transports whose broker holds the leases, see
    /// [`Transport::leases_held_by_broker`](crate::Transport::leases_held_by_broker)). The
    /// Only a witness of the holder's death (its master) knows whether this task caused it:
    /// the caller settles it as a crash when it did, runs it uncharged when the holder died
    /// running another task, and otherwise gives it back once (see `unwitnessed_returns`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    /// How many times this task came back [`lost`](Task::lost) to a claimer that could not
    /// tell why, and was given back uncharged (always 0 where leases are not held by a broker).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unwitnessed_returns: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Task {
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            token: self.lease_token,
        }
    }
}

/// One settlement of a batch ([`Transport::settle`](crate::Transport::settle)): what became
/// of one claimed attempt. Each is fenced by its own lease token.
#[derive(Clone, Debug, PartialEq)]
pub enum Settlement {
    /// The attempt succeeded; `submits` (the worker's follow-up tasks) are enqueued atomically
    /// with it, and not at all when its lease is stale. `result` (the worker's JSON result) is
    /// kept with the completed task where the transport keeps completed tasks.
    Complete {
        lease: Lease,
        submits: Vec<Submit>,
        result: Option<Value>,
    },
    /// The attempt failed: with `retry_at` the task is pending again from then, without it the
    /// task is kept as `failed`.
    Fail {
        lease: Lease,
        failure: Failure,
        retry_at: Option<SystemTime>,
    },
    /// Back to pending, in its place, no attempt used (a prefetched task never started).
    Release { lease: Lease, reason: String },
}

impl Settlement {
    pub fn lease(&self) -> &Lease {
        match self {
            Settlement::Complete { lease, .. }
            | Settlement::Fail { lease, .. }
            | Settlement::Release { lease, .. } => lease,
        }
    }

    /// The follow-up submits this settlement carries (only a completion has any).
    pub fn submits(&self) -> &[Submit] {
        match self {
            Settlement::Complete { submits, .. } => submits,
            _ => &[],
        }
    }
}

/// Why an attempt failed. The two kinds are budgeted separately by the retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// The worker returned an error or panicked; the process survived.
    Error,
    /// The process holding the task died (signal, exit status, timeout kill, lease expiry).
    Crash,
    /// An operator cancelled the task: it is kept as failed, counted neither as an error nor
    /// as a crash, and never retried by policy.
    Cancelled,
}

/// A failed attempt: its kind and a human-readable reason (`Oops!`, `killed by SIGKILL`...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
}

impl Failure {
    pub fn error(reason: impl Into<String>) -> Self {
        Failure {
            kind: FailureKind::Error,
            reason: reason.into(),
        }
    }
    pub fn crash(reason: impl Into<String>) -> Self {
        Failure {
            kind: FailureKind::Crash,
            reason: reason.into(),
        }
    }
    pub fn cancelled(reason: impl Into<String>) -> Self {
        Failure {
            kind: FailureKind::Cancelled,
            reason: reason.into(),
        }
    }
}

/// How an attempt ended, as recorded in a task's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    Error,
    Crash,
    /// An operator cancelled it (pending, or running: its worker was stopped).
    Cancelled,
    Released,
}

/// One entry of a task's attempt history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub owner: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the attempt was claimed, in milliseconds since the Unix epoch (absent in the
    /// history written by older versions, and on RabbitMQ for a holder that vanished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// Milliseconds since the Unix epoch.
    pub finished_at: i64,
}

impl Attempt {
    /// How long the attempt took, when its start was recorded.
    pub fn took(&self) -> Option<Duration> {
        let ms = self.finished_at.checked_sub(self.started_at?)?;
        Some(Duration::from_millis(u64::try_from(ms).ok()?))
    }
}

/// Counts for one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Pending and ready now.
    pub ready: u64,
    /// Pending but not before a later time (delayed submits and retries).
    pub delayed: u64,
    pub running: u64,
    pub failed: u64,
    /// Earliest `run_at` among delayed tasks.
    #[serde(default, with = "epoch_ms_opt")]
    pub next_run_at: Option<SystemTime>,
}

impl QueueCounts {
    /// Nothing left to do and nothing in flight: a `--halt-when-empty` worker may stop.
    pub fn is_drained(&self) -> bool {
        self.ready == 0 && self.delayed == 0 && self.running == 0
    }
}

/// Statistics for one queue (`rex asynctask-queues`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: String,
    /// Ready + delayed.
    pub pending: u64,
    pub delayed: u64,
    pub running: u64,
    pub failed: u64,
    /// Age in milliseconds of the oldest pending task, by submission time.
    pub oldest_pending_ms: Option<u64>,
    /// Claims of this queue hand out nothing until it is resumed
    /// ([`Transport::set_paused`](crate::Transport::set_paused)).
    #[serde(default)]
    pub paused: bool,
}

impl QueueStats {
    /// A queue with no task (yet), not paused.
    pub fn empty(queue: &str) -> Self {
        QueueStats {
            queue: queue.to_string(),
            pending: 0,
            delayed: 0,
            running: 0,
            failed: 0,
            oldest_pending_ms: None,
            paused: false,
        }
    }
}

/// A task as listed by operators (`rex asynctask-failed`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub id: TaskId,
    pub queue: String,
    pub state: TaskState,
    pub payload: Payload,
    pub attempts: u32,
    pub errors: u32,
    pub crashes: u32,
    pub last_error: Option<String>,
    pub history: Vec<Attempt>,
    #[serde(with = "epoch_ms")]
    pub created_at: SystemTime,
    /// A pending task's due time; a failed task's time of failure; a completed task's time of
    /// completion; a running task's claim due time.
    #[serde(default, with = "epoch_ms_opt")]
    pub run_at: Option<SystemTime>,
    /// A running task's owner (the worker process holding it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A completed task's result, when its worker returned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// Milliseconds since the Unix epoch (saturating both ways; times before 1970 become 0).
pub fn to_epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    to_epoch_ms(SystemTime::now())
}

/// Inverse of [`to_epoch_ms`].
pub fn from_epoch_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// `ms` plus `d` in milliseconds, saturating (a huge lease must not wrap into the past).
pub(crate) fn add_ms(ms: i64, d: Duration) -> i64 {
    ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) mod epoch_ms {
    use super::*;
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_epoch_ms(*t))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(from_epoch_ms(i64::deserialize(d)?))
    }
}

pub(crate) mod epoch_ms_opt {
    use super::*;
    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&to_epoch_ms(*t)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(from_epoch_ms))
    }
}
