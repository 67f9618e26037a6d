//! What operators and masters ask for besides the consumers' traffic: counts, stats (paused
//! queues included, with or without tasks), the failed tasks, retrying and purging them, the
//! schedules' idempotency keys (last_fire, prune_schedule_keys) and pause flags, and upkeep
//! (maintain: vacuum when the server's autovacuum is off). The console's reads and actions are
//! in `console.rs`.

use std::time::SystemTime;

use tokio_postgres::types::ToSql;

use super::connection::{BULK_TIMEOUT, MAINTENANCE_TIMEOUT};
use super::rows::{get_u64, now, summary_from_row, text};
use super::{PgsqlTransport, VACUUM_LOCK_CLASS};
use crate::task::{schedule_key_prefix, schedule_key_time, to_epoch_ms};
use crate::{
    PurgeWhich, QueueCounts, QueueStats, Result, RetriedTask, Selector, TaskState, TaskSummary,
    validate_queue_name, validate_schedule_id,
};

/// Dead rows in `tasks`, beyond a fifth of the live ones, that make [`Transport::maintain`]
/// vacuum when the server's autovacuum is off (autovacuum's rule with a larger base).
///
/// [`Transport::maintain`]: crate::Transport::maintain
const VACUUM_DEAD_ROWS: i64 = 10_000;

/// Whether the server's autovacuum is on, and the dead and live rows of the table `$1`.
const VACUUM_NEEDED: &str = include_str!("sql/queries/vacuum_needed.sql");
/// Held (session level) while one process vacuums; `$1` is [`VACUUM_LOCK_CLASS`], `$2` the
/// schema.
const VACUUM_LOCK: &str = include_str!("sql/queries/vacuum_lock.sql");
const VACUUM_UNLOCK: &str = include_str!("sql/queries/vacuum_unlock.sql");

impl PgsqlTransport {
    pub(super) async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.counts).await?;
            let row = client.query_one(&stmt, &[&now(), &queue]).await?;
            Ok(QueueCounts {
                ready: get_u64(&row, 0)?,
                delayed: get_u64(&row, 1)?,
                running: get_u64(&row, 2)?,
                failed: get_u64(&row, 3)?,
                next_run_at: row.try_get(4)?,
            })
        })
        .await
    }

    pub(super) async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.run_within(BULK_TIMEOUT, async {
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.stats).await?;
            let rows = client.query(&stmt, &[&now]).await?;
            rows.iter()
                .map(|row| {
                    let (ready, delayed) = (get_u64(row, 1)?, get_u64(row, 2)?);
                    let oldest: Option<SystemTime> = row.try_get(5)?;
                    Ok(QueueStats {
                        queue: row.try_get(0)?,
                        pending: ready + delayed,
                        delayed,
                        running: get_u64(row, 3)?,
                        failed: get_u64(row, 4)?,
                        oldest_pending_ms: oldest.map(|created| {
                            now.duration_since(created)
                                .map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
                        }),
                        paused: row.try_get(6)?,
                    })
                })
                .collect()
        })
        .await
    }

    pub(super) async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        self.run_within(BULK_TIMEOUT, async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.failed).await?;
            let rows = client.query(&stmt, &[&queue]).await?;
            rows.iter().map(summary_from_row).collect()
        })
        .await
    }

    pub(super) async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        if let Selector::Queue(queue) = selector {
            validate_queue_name(queue)?;
        }
        self.run_within(BULK_TIMEOUT, async {
            let now = now();
            let client = self.client().await?;
            let rows = match selector {
                Selector::Ids(ids) => {
                    let stmt = client.prepare_cached(&self.sql.retry_ids).await?;
                    client.query(&stmt, &[&now, ids]).await?
                }
                Selector::Queue(queue) => {
                    let stmt = client.prepare_cached(&self.sql.retry_queue).await?;
                    client.query(&stmt, &[&now, queue]).await?
                }
                Selector::All => {
                    let stmt = client.prepare_cached(&self.sql.retry_all).await?;
                    client.query(&stmt, &[&now]).await?
                }
            };
            let mut moved = Vec::with_capacity(rows.len());
            for row in &rows {
                moved.push(RetriedTask {
                    id: row.try_get(0)?,
                    queue: row.try_get(1)?,
                });
            }
            let mut queues: Vec<&str> = moved.iter().map(|t| t.queue.as_str()).collect();
            queues.sort_unstable();
            queues.dedup();
            if !moved.is_empty() {
                // Attempts count from 1 again: a cancel request names an attempt, so those of
                // tasks not running go, lest a retried attempt be taken for the cancelled one.
                let stmt = client
                    .prepare_cached(&self.sql.forget_cancel_requests)
                    .await?;
                client.execute(&stmt, &[]).await?;
            }
            if !queues.is_empty() {
                // After the commit, like every notification: operators' retries are rare
                // enough for a second statement.
                let stmt = client.prepare_cached(&self.sql.notify).await?;
                client.execute(&stmt, &[&self.channel, &queues]).await?;
            }
            Ok(moved)
        })
        .await
    }

    pub(super) async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        let state = match which {
            PurgeWhich::Failed => TaskState::Failed,
            PurgeWhich::Pending => TaskState::Pending,
        };
        self.run_within(BULK_TIMEOUT, async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.purge).await?;
            Ok(client.execute(&stmt, &[&queue, &state.as_str()]).await?)
        })
        .await
    }

    pub(super) async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let prefix = schedule_key_prefix(schedule);
        // Keys of one schedule are contiguous: `prefix` < key < `prefix` with ':' bumped to ';'.
        let upper = format!("{};", &prefix[..prefix.len() - 1]);
        let (prefix, upper) = (text(&prefix), text(&upper));
        let key: Option<String> = self
            .run(async {
                let client = self.client().await?;
                let stmt = client.prepare_cached(&self.sql.last_fire).await?;
                let row = client.query_opt(&stmt, &[&prefix, &upper]).await?;
                Ok(row.map(|row| row.try_get(0)).transpose()?)
            })
            .await?;
        Ok(key.as_deref().and_then(schedule_key_time))
    }

    pub(super) async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        validate_schedule_id(id)?;
        self.run(async {
            let client = self.client().await?;
            let sql = if paused {
                &self.sql.pause_schedule
            } else {
                &self.sql.resume_schedule
            };
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.execute(&stmt, &[&id]).await? == 1)
        })
        .await
    }

    pub(super) async fn paused_schedules(&self) -> Result<Vec<String>> {
        self.texts(&self.sql.paused_schedules).await
    }

    pub(super) async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        let before = to_epoch_ms(before);
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.prune_schedule_keys).await?;
            let fires = client.execute(&stmt, &[&before]).await?;
            let stmt = client.prepare_cached(&self.sql.prune_manual_keys).await?;
            Ok(fires + client.execute(&stmt, &[&before]).await?)
        })
        .await
    }

    /// Why and when: see the trait implementation's doc (in `mod.rs`).
    pub(super) async fn maintain(&self) -> Result<Option<String>> {
        self.run_within(MAINTENANCE_TIMEOUT, async {
            let client = self.client().await?;
            let tasks = format!("\"{}\".tasks", self.schema);
            let row = client.query_one(VACUUM_NEEDED, &[&tasks]).await?;
            let (autovacuum, dead, live): (bool, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if autovacuum || dead < VACUUM_DEAD_ROWS + live / 5 {
                return Ok(None);
            }
            let lock = [&VACUUM_LOCK_CLASS as &(dyn ToSql + Sync), &self.schema];
            let locked: bool = client.query_one(VACUUM_LOCK, &lock).await?.try_get(0)?;
            if !locked {
                return Ok(None); // another process is at it
            }
            let vacuumed = client.batch_execute(&self.sql.vacuum).await;
            let unlocked = client.execute(VACUUM_UNLOCK, &lock).await;
            if vacuumed.is_err() || unlocked.is_err() {
                // Never back into the pool while it may still hold the lock.
                drop(deadpool_postgres::Client::take(client));
            }
            vacuumed?;
            unlocked?;
            Ok(Some(format!(
                "Vacuumed {tasks} ({dead} dead rows; the server's autovacuum is off)"
            )))
        })
        .await
    }
}
