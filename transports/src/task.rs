//! The data that crosses the [`Transport`](crate::Transport) contract, and the validation
//! rules every backend shares.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TransportError;

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
    /// with it, and not at all when its lease is stale.
    Complete { lease: Lease, submits: Vec<Submit> },
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
}

/// How an attempt ended, as recorded in a task's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    Error,
    Crash,
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
    /// Milliseconds since the Unix epoch.
    pub finished_at: i64,
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
    /// A pending task's due time; a failed task's time of failure; a running task's claim
    /// due time.
    #[serde(default, with = "epoch_ms_opt")]
    pub run_at: Option<SystemTime>,
    /// A running task's owner (the worker process holding it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The longest queue name, in characters. Every backend stores it within its own limits
/// (RabbitMQ's 255-byte queue names, with the prefix and a suffix).
pub const MAX_QUEUE_NAME: usize = 128;

/// Queue names: `^[a-z](?:[a-z0-9]|_(?!_))*[a-z0-9]$` — lowercase letters, digits and single
/// underscores, starting with a letter, ending with a letter or digit, 2 to
/// [`MAX_QUEUE_NAME`] characters.
pub fn validate_queue_name(name: &str) -> Result<(), TransportError> {
    let bytes = name.as_bytes();
    let ok = (2..=MAX_QUEUE_NAME).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && matches!(bytes[bytes.len() - 1], b'a'..=b'z' | b'0'..=b'9')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(TransportError::InvalidQueueName(excerpt(name, 80)))
    }
}

/// How deeply a payload may nest objects and arrays. Below serde_json's own parsing limit
/// (128), so that a payload accepted here is read back by every process and backend.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How much of a rejected input an error quotes.
pub const EXCERPT: usize = 200;

/// A payload must be a JSON object: anything else, `null` included, is `Expected a mapping`
/// (a `null` silently stored as `{}` would not be what was submitted), and it may nest at
/// most [`MAX_PAYLOAD_DEPTH`] levels.
pub fn normalize_payload(value: Value) -> Result<Payload, TransportError> {
    match value {
        Value::Object(map) => {
            check_payload(&map)?;
            Ok(map)
        }
        other => Err(TransportError::InvalidPayload(excerpt(
            &other.to_string(),
            EXCERPT,
        ))),
    }
}

/// The one object key a payload may not use: serde_json keeps numbers exact (any number of
/// digits) by reading `{"$serde_json::private::Number": "1.5"}` as the number 1.5, so an
/// object with this key would not come back as it was submitted.
pub const RESERVED_KEY: &str = "$serde_json::private::Number";

/// Refuse a payload nested deeper than [`MAX_PAYLOAD_DEPTH`] (the object itself is level 1)
/// or using [`RESERVED_KEY`].
pub fn check_payload(payload: &Payload) -> Result<(), TransportError> {
    if payload.contains_key(RESERVED_KEY) {
        return Err(TransportError::ReservedKey);
    }
    // Iterative: a hostile payload must not exhaust the stack here.
    let mut stack: Vec<(&Value, usize)> = payload.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) if map.contains_key(RESERVED_KEY) => {
                return Err(TransportError::ReservedKey);
            }
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(TransportError::PayloadTooDeep {
                max: MAX_PAYLOAD_DEPTH,
            });
        }
        stack.extend(children.map(|v| (v, depth + 1)));
    }
    Ok(())
}

/// Whether JSON `text` (already known to parse) has an object key that decodes to
/// [`RESERVED_KEY`]. Needed besides [`check_payload`]: as the first key of its object, the
/// key is consumed by the parser itself (the object becomes a number).
pub fn has_reserved_key(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        // A string token: find its end, skipping escaped characters.
        let start = i;
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        let end = (i + 1).min(bytes.len());
        i = end;
        let next = bytes[end..].iter().find(|b| !b.is_ascii_whitespace());
        if next == Some(&b':')
            && serde_json::from_str::<String>(&text[start..end]).is_ok_and(|k| k == RESERVED_KEY)
        {
            return true;
        }
    }
    false
}

/// Refuse a payload of `size` bytes (compact JSON) above `max`.
pub fn check_size(size: usize, max: usize) -> Result<(), TransportError> {
    if size > max {
        return Err(TransportError::PayloadTooLarge { size, max });
    }
    Ok(())
}

/// At most `max` characters of `text`, then how long it was: errors quote hostile input
/// without echoing megabytes of it.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes in all)", &text[..cut], text.len()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_the_original_rule() {
        for ok in [
            "ab",
            "foo",
            "a_b",
            "some_queue",
            "scheduled_0_demo_bar_worker",
            "q1",
        ] {
            assert!(validate_queue_name(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "a", "a__b", "foo_", "1foo", "BADNAME", "", "_ab", "a-b", "é1",
        ] {
            assert!(validate_queue_name(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn queue_names_have_a_length_limit_and_errors_an_excerpt() {
        let longest = "a".repeat(MAX_QUEUE_NAME);
        assert!(validate_queue_name(&longest).is_ok());
        let err = validate_queue_name(&"a".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
        assert!(err.to_string().contains("(10000 bytes in all)"), "{err}");
    }

    #[test]
    fn payload_nesting_is_limited_without_recursion() {
        // `depth` objects, one inside the other, around a number.
        let nested = |depth: usize| {
            let mut v = Value::from(1);
            for _ in 0..depth {
                v = serde_json::json!({ "a": v });
            }
            v
        };
        assert!(normalize_payload(nested(MAX_PAYLOAD_DEPTH)).is_ok());
        let err = normalize_payload(nested(MAX_PAYLOAD_DEPTH + 1)).unwrap_err();
        assert!(
            matches!(err, TransportError::PayloadTooDeep { .. }),
            "{err}"
        );
        // One object around MAX_PAYLOAD_DEPTH arrays.
        let mut arrays = Value::from(1);
        for _ in 0..MAX_PAYLOAD_DEPTH {
            arrays = Value::Array(vec![arrays]);
        }
        let err = normalize_payload(serde_json::json!({ "a": arrays })).unwrap_err();
        assert!(
            matches!(err, TransportError::PayloadTooDeep { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_reserved_key_is_refused_wherever_it_is() {
        for text in [
            r#"{"a": 1, "$serde_json::private::Number": "2"}"#,
            r#"{"a": [{"b": {"\u0024serde_json::private::Number": 1}}]}"#,
            r#"{"x": {"$serde_json::private::Number": "12"}}"#,
            r#"{ "$serde_json::private::Number"  : "12" }"#,
        ] {
            assert!(has_reserved_key(text), "{text}");
        }
        for text in [
            r#"{"a": "$serde_json::private::Number"}"#,
            r#"{"a\"": ["$serde_json::private::Number", 1]}"#,
            r#"{"serde_json::private::Number": 1}"#,
        ] {
            assert!(!has_reserved_key(text), "{text}");
        }
        let nested: Value = serde_json::json!({"a": [{"b": 1}]});
        let mut inner = serde_json::Map::new();
        inner.insert(RESERVED_KEY.into(), Value::from(1));
        let mut payload = nested.as_object().cloned().unwrap();
        payload.insert("c".into(), Value::Object(inner));
        assert!(matches!(
            check_payload(&payload),
            Err(TransportError::ReservedKey)
        ));
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééééé", 2), "éé... (10 bytes in all)");
    }

    #[test]
    fn payloads_must_be_objects() {
        let err = normalize_payload(Value::Null).unwrap_err();
        assert_eq!(err.to_string(), "Expected a mapping\nGot:\n    null");
        let p = normalize_payload(serde_json::json!({"b": 1, "a": {"d": 1, "c": 2}})).unwrap();
        assert_eq!(Value::Object(p).to_string(), r#"{"a":{"c":2,"d":1},"b":1}"#);
        let err = normalize_payload(serde_json::json!([1])).unwrap_err();
        assert_eq!(err.to_string(), "Expected a mapping\nGot:\n    [1]");
    }
}

/// The idempotency key of one fire of a schedule: submitting every fire under its key makes
/// several schedulers enqueue it once. The time is zero-padded so keys sort by time.
pub fn schedule_key(schedule: &str, at: SystemTime) -> String {
    format!(
        "{}{:016}",
        schedule_key_prefix(schedule),
        to_epoch_ms(at).max(0)
    )
}

/// Every key of `schedule` starts with this.
pub fn schedule_key_prefix(schedule: &str) -> String {
    format!("schedule:{schedule}:")
}

/// The fire time in a key made by [`schedule_key`].
pub fn schedule_key_time(key: &str) -> Option<SystemTime> {
    key.rsplit(':')
        .next()?
        .parse::<i64>()
        .ok()
        .map(from_epoch_ms)
}

#[cfg(test)]
mod schedule_key_tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_and_round_trip() {
        let early = from_epoch_ms(999);
        let late = from_epoch_ms(1_795_000_000_000);
        assert!(schedule_key("abc", early) < schedule_key("abc", late));
        assert_eq!(schedule_key_time(&schedule_key("abc", late)), Some(late));
        assert_eq!(schedule_key("abc", early), "schedule:abc:0000000000000999");
    }
}
