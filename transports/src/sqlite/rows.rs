//! Rows ↔ values: reading tasks and summaries out of result rows, and the JSON and integer
//! conversions the columns need. The queries that feed [`task_from_row`] (`claim.sql`,
//! `owned_by.sql`, `expired.sql`) and [`summary_from_row`] (`failed.sql`) list their columns
//! in the order read here.

use rusqlite::Row;
use rusqlite::types::Type;

use crate::task::{from_epoch_ms, to_epoch_ms};
use crate::{Attempt, Lease, Outcome, Payload, Task, TaskState, TaskSummary};

pub(super) fn encode(payload: &Payload) -> rusqlite::Result<String> {
    serde_json::to_string(payload).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Parse the JSON text in column `idx`.
fn decode<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// SQLite integers are `i64`; counts and lease tokens are never negative.
pub(super) fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, Box::new(e)))
}

/// A lease token as stored. Tokens count claims from 0, so one beyond `i64::MAX` was never
/// issued: -1 matches no row, which makes the settlement stale, as it should be.
pub(super) fn token(lease: &Lease) -> i64 {
    i64::try_from(lease.token).unwrap_or(-1)
}

/// Columns: `id, queue, payload, attempts, errors, crashes, lease_token, owner, lease_until,
/// created_at`.
pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: row.get(0)?,
        queue: row.get(1)?,
        payload: decode(row, 2)?,
        attempt: row.get(3)?,
        errors: row.get(4)?,
        crashes: row.get(5)?,
        lease_token: get_u64(row, 6)?,
        owner: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
        lease_until: from_epoch_ms(row.get::<_, Option<i64>>(8)?.unwrap_or(0)),
        created_at: from_epoch_ms(row.get(9)?),
        lost: false,
        unwitnessed_returns: 0,
    })
}

/// Columns: `id, queue, state, payload, attempts, errors, crashes, last_error, history,
/// created_at, run_at, owner, result, started_at`. A completed task's last attempt is not in
/// its stored history (`complete.sql`): it is made here from its columns.
pub(super) fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<TaskSummary> {
    let mut summary = stored_summary(row)?;
    let owner = summary.owner.take();
    match summary.state {
        TaskState::Running => summary.owner = owner,
        TaskState::Done => summary.history.push(Attempt {
            attempt: summary.attempts,
            owner: owner.unwrap_or_default(),
            outcome: Outcome::Done,
            reason: None,
            started_at: row.get(13)?,
            finished_at: summary.run_at.map_or(0, to_epoch_ms),
        }),
        _ => {}
    }
    Ok(summary)
}

fn stored_summary(row: &Row<'_>) -> rusqlite::Result<TaskSummary> {
    let state: String = row.get(2)?;
    Ok(TaskSummary {
        id: row.get(0)?,
        queue: row.get(1)?,
        state: TaskState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                Type::Text,
                format!("unknown task state {state:?}").into(),
            )
        })?,
        payload: decode(row, 3)?,
        attempts: row.get(4)?,
        errors: row.get(5)?,
        crashes: row.get(6)?,
        last_error: row.get(7)?,
        history: decode(row, 8)?,
        created_at: from_epoch_ms(row.get(9)?),
        run_at: row.get::<_, Option<i64>>(10)?.map(from_epoch_ms),
        owner: row.get(11)?,
        result: match row.get::<_, Option<String>>(12)? {
            Some(_) => Some(decode(row, 12)?),
            None => None,
        },
    })
}
