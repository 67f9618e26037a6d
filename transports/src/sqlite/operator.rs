//! What operators and schedulers ask of the queue rather than workers: counts and statistics,
//! the failed tasks (to list, retry or purge), and the idempotency keys of schedule fires
//! (`last_fire`, `prune_schedule_keys`).

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use super::SqliteTransport;
use super::rows::{get_u64, summary_from_row};
use crate::task::{from_epoch_ms, now_ms, schedule_key_prefix, schedule_key_time, to_epoch_ms};
use crate::{
    PurgeWhich, QueueCounts, QueueStats, Result, RetriedTask, Selector, TaskState, TaskSummary,
    validate_queue_name, validate_schedule_id,
};

/// `counts.sql` and `stats.sql` share their four count columns; `?1` is now.
const COUNTS: &str = include_str!("sql/queries/counts.sql");
const STATS: &str = include_str!("sql/queries/stats.sql");
const FAILED: &str = include_str!("sql/queries/failed.sql");
const RETRY_FAILED_BY_IDS: &str = include_str!("sql/queries/retry_failed_by_ids.sql");
const RETRY_FAILED_BY_QUEUE: &str = include_str!("sql/queries/retry_failed_by_queue.sql");
const RETRY_FAILED_ALL: &str = include_str!("sql/queries/retry_failed_all.sql");
const PURGE: &str = include_str!("sql/queries/purge.sql");
const LAST_FIRE: &str = include_str!("sql/queries/last_fire.sql");
/// Schedule keys (`schedule:<id>:<16-digit ms>`) older than `?1`, but the latest of each
/// schedule: numbered per schedule from the newest, by a window function (one sort, not a
/// lookup per key).
const PRUNE_SCHEDULE_KEYS: &str = include_str!("sql/queries/prune_schedule_keys.sql");
const PRUNE_MANUAL_KEYS: &str = include_str!("sql/queries/prune_manual_keys.sql");
const FORGET_CANCEL_REQUESTS: &str = include_str!("sql/queries/forget_cancel_requests.sql");
const PAUSE_SCHEDULE: &str = include_str!("sql/queries/pause_schedule.sql");
const RESUME_SCHEDULE: &str = include_str!("sql/queries/resume_schedule.sql");
const PAUSED_SCHEDULES: &str = include_str!("sql/queries/paused_schedules.sql");

impl SqliteTransport {
    pub(super) fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        let now = now_ms();
        self.with(|conn| {
            conn.prepare_cached(COUNTS)?
                .query_row(params![now, queue], |row| {
                    Ok(QueueCounts {
                        ready: get_u64(row, 0)?,
                        delayed: get_u64(row, 1)?,
                        running: get_u64(row, 2)?,
                        failed: get_u64(row, 3)?,
                        next_run_at: row.get::<_, Option<i64>>(4)?.map(from_epoch_ms),
                    })
                })
        })
    }

    pub(super) fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = now_ms();
        let stats = self.with(|conn| {
            conn.prepare_cached(STATS)?
                .query_map(params![now], |row| {
                    let (ready, delayed) = (get_u64(row, 1)?, get_u64(row, 2)?);
                    Ok(QueueStats {
                        queue: row.get(0)?,
                        pending: ready + delayed,
                        delayed,
                        running: get_u64(row, 3)?,
                        failed: get_u64(row, 4)?,
                        oldest_pending_ms: row
                            .get::<_, Option<i64>>(5)?
                            .map(|created| u64::try_from(now - created).unwrap_or(0)),
                        paused: false,
                    })
                })?
                .collect()
        })?;
        Ok(crate::console::with_paused(stats, &self.paused()?))
    }

    pub(super) fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        self.with(|conn| {
            conn.prepare_cached(FAILED)?
                .query_map(params![queue], summary_from_row)?
                .collect()
        })
    }

    pub(super) fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        let now = now_ms();
        let row = |row: &rusqlite::Row<'_>| {
            Ok(RetriedTask {
                id: row.get(0)?,
                queue: row.get(1)?,
            })
        };
        let moved: Vec<RetriedTask> = match selector {
            Selector::Ids(ids) => {
                let ids = serde_json::Value::from(ids.as_slice()).to_string();
                self.with(|conn| {
                    conn.prepare_cached(RETRY_FAILED_BY_IDS)?
                        .query_map(params![now, ids], row)?
                        .collect()
                })?
            }
            Selector::Queue(queue) => {
                validate_queue_name(queue)?;
                self.with(|conn| {
                    conn.prepare_cached(RETRY_FAILED_BY_QUEUE)?
                        .query_map(params![now, queue], row)?
                        .collect()
                })?
            }
            Selector::All => self.with(|conn| {
                conn.prepare_cached(RETRY_FAILED_ALL)?
                    .query_map(params![now], row)?
                    .collect()
            })?,
        };
        if !moved.is_empty() {
            // Attempts count from 1 again: a cancel request names an attempt, so those of
            // tasks not running go, lest a retried task's attempt be taken for the cancelled one.
            self.with(|conn| conn.prepare_cached(FORGET_CANCEL_REQUESTS)?.execute([]))?;
            self.wake_up();
        }
        Ok(moved)
    }

    pub(super) fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        let state = match which {
            PurgeWhich::Failed => TaskState::Failed,
            PurgeWhich::Pending => TaskState::Pending,
        };
        let purged = self.with(|conn| {
            conn.prepare_cached(PURGE)?
                .execute(params![queue, state.as_str()])
        })?;
        Ok(purged as u64)
    }

    pub(super) fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let prefix = schedule_key_prefix(schedule);
        // Keys of one schedule are contiguous: `prefix` < key < `prefix` with ':' bumped to ';'.
        let upper = format!("{};", &prefix[..prefix.len() - 1]);
        let key: Option<String> = self.with(|conn| {
            conn.prepare_cached(LAST_FIRE)?
                .query_row(params![prefix, upper], |row| row.get(0))
                .optional()
        })?;
        Ok(key.as_deref().and_then(schedule_key_time))
    }

    pub(super) fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        validate_schedule_id(id)?;
        let changed = self.with(|conn| {
            if paused {
                conn.prepare_cached(PAUSE_SCHEDULE)?
                    .execute(params![id, now_ms()])
            } else {
                conn.prepare_cached(RESUME_SCHEDULE)?.execute(params![id])
            }
        })?;
        Ok(changed > 0)
    }

    pub(super) fn paused_schedules(&self) -> Result<Vec<String>> {
        self.texts(PAUSED_SCHEDULES)
    }

    pub(super) fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        let before = to_epoch_ms(before);
        let pruned = self.with(|conn| {
            Ok(conn
                .prepare_cached(PRUNE_SCHEDULE_KEYS)?
                .execute(params![before])?
                + conn
                    .prepare_cached(PRUNE_MANUAL_KEYS)?
                    .execute(params![before])?)
        })?;
        Ok(pruned as u64)
    }
}
