//! Values between Rust and the columns: times as stored, lease tokens, text without NULs,
//! payloads as JSON text, and the rows the queries return decoded into tasks and summaries
//! (by position: see the column lists in `sql/queries/`).

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::Row;

use super::MAX_DELAY;
use super::connection::Fail;
use crate::{Attempt, Lease, Payload, Task, TaskState, TaskSummary};

pub(super) fn now() -> SystemTime {
    SystemTime::now()
}

/// Times as stored: not before 1970 (like the other transports) nor beyond what
/// `timestamptz` holds.
pub(super) fn clamp_time(t: SystemTime) -> SystemTime {
    let max = UNIX_EPOCH + MAX_DELAY * 10;
    t.clamp(UNIX_EPOCH, max)
}

pub(super) fn add(t: SystemTime, d: Duration) -> SystemTime {
    clamp_time(t + d.min(MAX_DELAY))
}

/// A lease token as stored. Tokens count claims from 0, so one beyond `i64::MAX` was never
/// issued: -1 matches no row, which makes the settlement stale, as it should be.
pub(super) fn token(lease: &Lease) -> i64 {
    i64::try_from(lease.token).unwrap_or(-1)
}

/// PostgreSQL text cannot hold NUL characters; a failure reason must never make `fail` fail.
pub(super) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}").into()
    } else {
        s.into()
    }
}

pub(super) fn encode(payload: &Payload) -> Result<String, Fail> {
    serde_json::to_string(payload).map_err(|e| Fail::Data(format!("cannot encode a payload: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> Result<T, Fail> {
    let text: String = row.try_get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| Fail::Data(format!("corrupt JSON in column {idx}: {e}")))
}

fn get_u32(row: &Row, idx: usize) -> Result<u32, Fail> {
    let value: i32 = row.try_get(idx)?;
    u32::try_from(value).map_err(|_| Fail::Data(format!("negative value {value} in column {idx}")))
}

pub(super) fn get_u64(row: &Row, idx: usize) -> Result<u64, Fail> {
    let value: i64 = row.try_get(idx)?;
    u64::try_from(value).map_err(|_| Fail::Data(format!("negative value {value} in column {idx}")))
}

pub(super) fn task_from_row(row: &Row) -> Result<Task, Fail> {
    Ok(Task {
        id: row.try_get(0)?,
        queue: row.try_get(1)?,
        payload: decode(row, 2)?,
        attempt: get_u32(row, 3)?,
        errors: get_u32(row, 4)?,
        crashes: get_u32(row, 5)?,
        lease_token: get_u64(row, 6)?,
        owner: row.try_get::<_, Option<String>>(7)?.unwrap_or_default(),
        lease_until: row
            .try_get::<_, Option<SystemTime>>(8)?
            .unwrap_or(UNIX_EPOCH),
        created_at: row.try_get(9)?,
        lost: false,
        unwitnessed_returns: 0,
    })
}

pub(super) fn summary_from_row(row: &Row) -> Result<TaskSummary, Fail> {
    let state: String = row.try_get(2)?;
    let state = TaskState::parse(&state)
        .ok_or_else(|| Fail::Data(format!("unknown task state {state:?}")))?;
    Ok(TaskSummary {
        id: row.try_get(0)?,
        queue: row.try_get(1)?,
        state,
        payload: decode(row, 3)?,
        attempts: get_u32(row, 4)?,
        errors: get_u32(row, 5)?,
        crashes: get_u32(row, 6)?,
        last_error: row.try_get(7)?,
        history: decode::<Vec<Attempt>>(row, 8)?,
        created_at: row.try_get(9)?,
        run_at: Some(row.try_get(10)?),
        // Kept after a release or a failure only in the history.
        owner: match state {
            TaskState::Running => row.try_get(11)?,
            _ => None,
        },
        result: match row.try_get::<_, Option<String>>(12)? {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| Fail::Data(format!("corrupt task result: {e}")))?,
            ),
            None => None,
        },
    })
}
