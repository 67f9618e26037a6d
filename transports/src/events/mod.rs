//! Lifecycle events: a live feed of what happens to tasks (submitted, started, succeeded,
//! failed, retried, crashed, cancelled, released), for `rex asynctask-events` and the
//! console's `/api/events`.
//!
//! * this file — [`TaskEvent`], its [`EventKind`], the [`EventFeed`] a follower reads, and
//!   the encoding every backend puts on its wire (a JSON array per message, split to fit).
//! * `tap.rs` — [`tap`]: a [`Transport`](crate::Transport) wrapper that turns the calls made
//!   through it into events and publishes them, only while someone follows.
//!
//! Each backend carries the events on its own publish/subscribe: PostgreSQL
//! `NOTIFY`, Redis `PUBLISH`, a RabbitMQ fanout exchange, datagrams to the registered
//! followers of a SQLite database (as its wake bus), a broadcast channel in memory.
//!
//! The feed is live and best effort, not a log: events are published by the process that
//! caused them once its change is committed; a follower sees what happens while it follows
//! (from at most [`FOLLOW_CHECK`] after it starts), and a publisher that dies between its
//! commit and its publish, or a follower that falls too far behind, loses some. What happened
//! is always in the tasks themselves (`asynctask-show`) and in the history counters.

mod tap;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::{Result, TaskId};

pub use tap::tap;

/// How often a publisher asks its transport whether anyone follows the events: a follower
/// that starts sees every event from at most this long after.
pub const FOLLOW_CHECK: Duration = Duration::from_secs(2);

/// What happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Enqueued (by a submit, a schedule fire, or a worker's follow-up).
    Submitted,
    /// Claimed by a worker process, which runs it now or next (a claimed window is run in
    /// order).
    Started,
    /// Its attempt completed.
    Succeeded,
    /// Its attempt failed (an error or a panic) and no attempt is left: it is kept as failed.
    Failed,
    /// Its attempt failed and it will run again at `retry_at`, or an operator retried it
    /// after it failed (reason [`crate::console::RETRIED`]).
    Retried,
    /// The worker process running it died (a signal, an exit, a timeout, a lost lease).
    Crashed,
    /// An operator cancelled it.
    Cancelled,
    /// Given back to pending without using an attempt (a claimed task its worker did not
    /// start, or whose master died).
    Released,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Submitted,
        EventKind::Started,
        EventKind::Succeeded,
        EventKind::Failed,
        EventKind::Retried,
        EventKind::Crashed,
        EventKind::Cancelled,
        EventKind::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Started => "started",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Retried => "retried",
            EventKind::Crashed => "crashed",
            EventKind::Cancelled => "cancelled",
            EventKind::Released => "released",
        }
    }
}

/// One lifecycle event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// When, in milliseconds since the Unix epoch, by the clock of the process that caused it.
    pub at: i64,
    pub event: EventKind,
    pub queue: String,
    /// The task. `None` only for a follow-up task submitted with its parent's completion,
    /// whose id is made in the same transaction and not returned; `parent` names the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TaskId>,
    /// The attempt (1 for the first run) it concerns, when the event concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Why: the error, panic message, crash or cancel reason, or why it was released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a retried task runs again (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// The worker process that claimed it (`host:pid:...`), for `started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl TaskEvent {
    pub fn new(event: EventKind, queue: &str, task: Option<TaskId>, at: i64) -> TaskEvent {
        TaskEvent {
            at,
            event,
            queue: queue.to_string(),
            task,
            parent: None,
            attempt: None,
            reason: None,
            retry_at: None,
            owner: None,
        }
    }
}

/// What a follower reads: batches of events in the order their publisher sent them, until
/// the backend's subscription fails (one `Err`, then the end). Dropping it unsubscribes.
pub type EventFeed = tokio::sync::mpsc::Receiver<Result<Vec<TaskEvent>>>;

/// Batches a follower's feed holds before its backend reader waits (or, where the backend
/// cannot wait, drops).
pub const FEED_BUFFER: usize = 1024;

/// The longest reason carried by an event; longer ones are cut (the task keeps all of it).
const MAX_REASON: usize = 500;

/// The messages that carry `events`: JSON arrays of at most `max_bytes` each (a single event
/// larger than that goes alone, its reason cut to fit where it can be).
pub(crate) fn encode(events: &[TaskEvent], max_bytes: usize) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current = String::from("[");
    for event in events {
        let mut event = event.clone();
        if let Some(reason) = &mut event.reason
            && reason.len() > MAX_REASON
        {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        let Ok(json) = serde_json::to_string(&event) else {
            continue;
        };
        if current.len() > 1 && current.len() + json.len() + 2 > max_bytes {
            current.push(']');
            messages.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&json);
    }
    if current.len() > 1 {
        current.push(']');
        messages.push(current);
    }
    messages
}

/// The events of one message; a message that is not ours (another program on the channel)
/// yields none.
pub(crate) fn decode(message: &[u8]) -> Vec<TaskEvent> {
    serde_json::from_slice(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64, reason: Option<&str>) -> TaskEvent {
        let mut e = TaskEvent::new(EventKind::Failed, "q", Some(n), 1_000 + n);
        e.reason = reason.map(str::to_string);
        e
    }

    #[test]
    fn messages_fit_and_keep_every_event_in_order() {
        let events: Vec<_> = (0..200).map(|n| event(n, Some("boom"))).collect();
        let messages = encode(&events, 1_000);
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| m.len() <= 1_000), "{messages:?}");
        let back: Vec<_> = messages.iter().flat_map(|m| decode(m.as_bytes())).collect();
        assert_eq!(back, events);
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(1_000);
        let messages = encode(&[event(1, Some(&long))], 8_000);
        let back = decode(messages[0].as_bytes());
        let reason = back[0].reason.as_deref().unwrap();
        assert!(reason.len() <= MAX_REASON + '…'.len_utf8());
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn foreign_messages_are_ignored() {
        assert!(decode(b"hello").is_empty());
        assert!(decode(b"[{\"x\":1}]").is_empty());
        assert!(encode(&[], 100).is_empty());
    }

    #[test]
    fn the_wire_form_is_stable() {
        let mut e = TaskEvent::new(EventKind::Retried, "emails", Some(7), 1_700_000_000_000);
        e.attempt = Some(2);
        e.reason = Some("Oops!".into());
        e.retry_at = Some(1_700_000_060_000);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"at":1700000000000,"event":"retried","queue":"emails","task":7,"attempt":2,"reason":"Oops!","retry_at":1700000060000}"#
        );
    }
}
