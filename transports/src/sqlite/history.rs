//! Throughput history ([`crate::history`]): one row per minute and queue, its counters as
//! JSON, added to under `BEGIN IMMEDIATE` (a read and a write per row: a master records a few
//! rows every few seconds, never per task). Rows older than [`HISTORY_KEPT`] are deleted by
//! each recording.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use super::SqliteTransport;
use super::connection::immediate;
use crate::history::{HISTORY_KEPT, check_rows, minute_of};
use crate::{Counters, HistoryRow, Result, TransportError};

const GET: &str = include_str!("sql/queries/history_get.sql");
const PUT: &str = include_str!("sql/queries/history_put.sql");
const PRUNE: &str = include_str!("sql/queries/history_prune.sql");
const RECORDING: &str = include_str!("sql/queries/history_recording.sql");
const PRUNE_RECORDINGS: &str = include_str!("sql/queries/history_recordings_prune.sql");
const READ: &str = include_str!("sql/queries/history.sql");

impl SqliteTransport {
    pub(super) fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        check_rows(rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        let oldest = minute_of(SystemTime::now() - HISTORY_KEPT);
        let now = crate::task::now_ms();
        let kept_since = now.saturating_sub(HISTORY_KEPT.as_millis() as i64);
        self.with(|conn| {
            immediate(conn, |conn| {
                conn.prepare_cached(PRUNE_RECORDINGS)?
                    .execute(params![kept_since])?;
                let new = conn
                    .prepare_cached(RECORDING)?
                    .execute(params![recording, now])?;
                if new == 0 {
                    return Ok(0); // recorded already
                }
                for row in rows {
                    let stored: Option<String> = conn
                        .prepare_cached(GET)?
                        .query_row(params![row.minute, row.queue], |r| r.get(0))
                        .optional()?;
                    let mut counters = match stored {
                        // A row this version cannot read is replaced rather than failing
                        // every recording after it.
                        Some(json) => serde_json::from_str::<Counters>(&json).unwrap_or_default(),
                        None => Counters::default(),
                    };
                    counters.add(&row.counters);
                    let json = serde_json::to_string(&counters)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    conn.prepare_cached(PUT)?
                        .execute(params![row.minute, row.queue, json])?;
                }
                conn.prepare_cached(PRUNE)?.execute(params![oldest])
            })
        })?;
        Ok(())
    }

    pub(super) fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        let rows: Vec<(String, i64, String)> = self.with(|conn| {
            conn.prepare_cached(READ)?
                .query_map(params![since, queue], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
        })?;
        rows.into_iter()
            .map(|(queue, minute, json)| {
                let counters =
                    serde_json::from_str(&json).map_err(|e| TransportError::Backend {
                        transport: super::TRANSPORT.to_string(),
                        message: format!("a history row of queue {queue} is unreadable: {e}"),
                    })?;
                Ok(HistoryRow {
                    queue,
                    minute,
                    counters,
                })
            })
            .collect()
    }
}
