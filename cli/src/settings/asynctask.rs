//! The `asynctask_workers` map: validation and its typed form.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Context;
use super::spec::{DAY, Range, parse_duration_value};
use crate::error::{Error, Result};
use rex_transport::{FailureKind, Task};

/// Fields a queue record may have, in the order they are documented.
const FIELDS: &[&str] = &[
    "worker",
    "concurrency",
    "prefetch",
    "max_attempts",
    "max_crashes",
    "retry_delay_min",
    "retry_delay_max",
    "timeout",
    "rate_max_calls",
    "rate_period",
];

/// The duration fields of a queue record and the span each accepts.
const DURATION_FIELDS: [(&str, Range); 4] = [
    ("retry_delay_min", Range::secs(0, 30 * DAY)),
    ("retry_delay_max", Range::positive(30 * DAY)),
    ("timeout", Range::positive(7 * DAY)),
    ("rate_period", Range::positive(7 * DAY)),
];

/// How failed attempts are retried. Shared by the master (crashes) and children (errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, whatever ended them (1 = never retried).
    pub max_attempts: u32,
    /// Attempts that may end with the worker process dying (poison-pill budget).
    pub max_crashes: u32,
    pub delay_min: Duration,
    pub delay_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            max_crashes: 1,
            delay_min: Duration::from_secs(1),
            delay_max: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// When to retry `task` after an attempt that failed with `kind`, or `None` when its
    /// budget is used up and it must be kept as failed.
    pub fn retry_at(&self, task: &Task, kind: FailureKind) -> Option<SystemTime> {
        let crashes = task.crashes + u32::from(kind == FailureKind::Crash);
        if kind == FailureKind::Cancelled
            || task.attempt >= self.max_attempts
            || crashes >= self.max_crashes.max(1) && kind == FailureKind::Crash
        {
            return None;
        }
        Some(SystemTime::now() + self.backoff(task.attempt))
    }

    /// Exponential backoff from `delay_min`, doubling per attempt, capped at `delay_max`, with
    /// jitter over the upper half so retries of a burst spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .delay_min
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.delay_max).max(self.delay_min);
        let jittered = capped.mul_f64(0.5 + fastrand::f64() * 0.5);
        jittered.max(self.delay_min.min(capped))
    }
}

/// The default cap of a child's claim window (`prefetch`): how many tasks it may lease ahead
/// of the one it runs. The window starts at 1 and grows only while full batches keep coming.
pub const DEFAULT_PREFETCH: u32 = 64;

/// The largest `prefetch` accepted.
pub const MAX_PREFETCH: u64 = 1000;

/// A processing-rate limit: at most `max_calls` tasks per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub max_calls: u32,
    pub period: Duration,
}

/// One enabled queue of `asynctask_workers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub queue: String,
    pub worker: String,
    /// Number of child processes for the queue.
    pub concurrency: u32,
    /// The most tasks a child claims in one batch (1: one at a time).
    pub prefetch: u32,
    pub retry: RetryPolicy,
    /// Hard limit per payload: the child is killed and the attempt counts as a crash.
    pub timeout: Option<Duration>,
    pub rate: Option<RateLimit>,
}

impl QueueConfig {
    /// A queue with every option at its default: one child, no retries, no timeout, no rate.
    pub fn with_defaults(queue: impl Into<String>, worker: impl Into<String>) -> QueueConfig {
        QueueConfig {
            queue: queue.into(),
            worker: worker.into(),
            concurrency: 1,
            prefetch: DEFAULT_PREFETCH,
            retry: RetryPolicy::default(),
            timeout: None,
            rate: None,
        }
    }
}

/// Validate `asynctask_workers` in one pass: the normalised value (for plugins and `rex
/// settings`) and the typed configuration of every enabled queue, sorted by queue name.
pub(super) fn validate_workers(
    value: Value,
    ctx: &Context<'_>,
) -> Result<(Value, Vec<QueueConfig>)> {
    let map = match value {
        Value::Null => return Ok((Value::Object(Map::new()), Vec::new())),
        Value::Object(map) => map,
        other => return Err(Error::new("Expected a mapping").context("Got:", other.to_string())),
    };
    let mut out = Map::new();
    let mut queues = Vec::new();
    for (queue, entry) in map {
        if let Err(e) = rex_transport::validate_queue_name(&queue) {
            return Err(Error::from(e).context(
                "While validating mapping key:",
                Value::String(queue).to_string(),
            ));
        }
        let key = Value::String(queue.clone()).to_string();
        let entry = validate_entry(entry, ctx)
            .map_err(|e| e.context("While validating mapping value for key:", key.clone()))?;
        if let Value::Object(record) = &entry {
            let config = queue_config(&queue, record)
                .map_err(|e| e.context("While validating mapping value for key:", key))?;
            queues.push(config);
        }
        out.insert(queue, entry);
    }
    queues.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok((Value::Object(out), queues))
}

fn validate_entry(entry: Value, ctx: &Context<'_>) -> Result<Value> {
    let record = match entry {
        Value::Null => return Ok(Value::Null),
        Value::String(worker) => {
            validate_worker_name(&worker, ctx)?;
            let mut record = Map::new();
            record.insert("worker".into(), Value::String(worker));
            return Ok(Value::Object(record));
        }
        Value::Object(record) => record,
        other => {
            return Err(Error::new("Expected a worker name or a JSON object")
                .context("Got:", other.to_string()));
        }
    };
    for field in record.keys() {
        if !FIELDS.contains(&field.as_str()) {
            return Err(Error::with_body("Got unexpected field:", field.clone()));
        }
    }
    let field_ctx = |name: &'static str| move |e: Error| e.context("While validating field:", name);
    match record.get("worker") {
        Some(Value::String(worker)) => {
            validate_worker_name(worker, ctx).map_err(field_ctx("worker"))?
        }
        Some(other) => {
            return Err(Error::new("Expected a string").context("Got:", other.to_string()))
                .map_err(field_ctx("worker"));
        }
        None => return Err(Error::with_body("Missing mandatory field:", "worker")),
    }
    for name in [
        "concurrency",
        "max_attempts",
        "max_crashes",
        "rate_max_calls",
    ] {
        if let Some(v) = record.get(name)
            && !v
                .as_u64()
                .is_some_and(|n| (1..=u32::MAX as u64).contains(&n))
        {
            return Err(Error::new("Expected a positive integer").context("Got:", v.to_string()))
                .map_err(field_ctx(name));
        }
    }
    if let Some(v) = record.get("prefetch")
        && !v.as_u64().is_some_and(|n| (1..=MAX_PREFETCH).contains(&n))
    {
        return Err(
            Error::new(format!("Expected an integer from 1 to {MAX_PREFETCH}"))
                .context("Got:", v.to_string()),
        )
        .map_err(field_ctx("prefetch"));
    }
    for (name, range) in DURATION_FIELDS {
        if let Some(v) = record.get(name) {
            range.check(v).map_err(field_ctx(name))?;
        }
    }
    if let (Some(min), Some(max)) = (record.get("retry_delay_min"), record.get("retry_delay_max"))
        && parse_duration_value(min)? > parse_duration_value(max)?
    {
        return Err(
            Error::new("retry_delay_min must not exceed retry_delay_max").context(
                "Got:",
                format!("retry_delay_min: {min}, retry_delay_max: {max}"),
            ),
        );
    }
    if record.contains_key("rate_max_calls") != record.contains_key("rate_period") {
        return Err(Error::new(
            "rate_max_calls and rate_period must be given together",
        ));
    }
    Ok(Value::Object(record))
}

pub(crate) fn validate_worker_name(worker: &str, ctx: &Context<'_>) -> Result<()> {
    if ctx.workers.iter().any(|w| w == worker) {
        Ok(())
    } else {
        Err(Error::with_body("Expected one of:", ctx.workers.join(", "))
            .context("Got:", Value::String(worker.to_string()).to_string()))
    }
}

/// The typed configuration of one validated, enabled entry (defaults for absent fields).
fn queue_config(queue: &str, record: &Map<String, Value>) -> Result<QueueConfig> {
    let int = |name: &str, default: u32| {
        record
            .get(name)
            .and_then(Value::as_u64)
            .map_or(default, |n| n as u32)
    };
    let dur = |name: &str| record.get(name).map(parse_duration_value).transpose();
    let defaults = RetryPolicy::default();
    let max_attempts = int("max_attempts", defaults.max_attempts);
    let given_delay_min = dur("retry_delay_min")?;
    Ok(QueueConfig {
        queue: queue.to_string(),
        worker: record
            .get("worker")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::with_body("Missing mandatory field:", "worker"))?
            .to_string(),
        concurrency: int("concurrency", 1),
        prefetch: int("prefetch", DEFAULT_PREFETCH),
        retry: RetryPolicy {
            max_attempts,
            max_crashes: int("max_crashes", max_attempts),
            delay_min: given_delay_min.unwrap_or(defaults.delay_min),
            // A maximum below the minimum given is raised to it.
            delay_max: dur("retry_delay_max")?
                .unwrap_or(defaults.delay_max)
                .max(given_delay_min.unwrap_or_default()),
        },
        timeout: dur("timeout")?,
        rate: match (
            record.get("rate_max_calls").and_then(Value::as_u64),
            dur("rate_period")?,
        ) {
            (Some(max_calls), Some(period)) => Some(RateLimit {
                max_calls: max_calls as u32,
                period,
            }),
            _ => None,
        },
    })
}
