//! Operators and maintenance: counts, stats (with the paused queues), the failed tasks (list,
//! retry, purge), and the idempotency keys and pause flags of schedules (`last_fire`,
//! `prune_schedule_keys`, `set_schedule_paused`). The reads are sent
//! again once after a dropped connection; the changes are not.

use std::time::SystemTime;

use ::redis::Value;

use super::RedisTransport;
use super::rows::STATS_ROW;
use super::scripts::SCRIPTS;
use crate::task::{now_ms, schedule_key_prefix, schedule_key_time, to_epoch_ms};
use crate::{
    PurgeWhich, QueueCounts, QueueStats, Result, RetriedTask, Selector, TaskId, TaskSummary,
    validate_queue_name, validate_schedule_id,
};

impl RedisTransport {
    pub(super) async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        let args = [queue.to_string(), now_ms().to_string()];
        let values: Vec<Value> = self.eval(&SCRIPTS.counts, &args, true).await?;
        if values.len() != 6 {
            return Err(self.corrupt(format_args!("counts returned {} values", values.len())));
        }
        Ok(self.counts_from(&values)?.0)
    }

    pub(super) async fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = now_ms();
        let rows: Vec<Value> = self.eval(&SCRIPTS.stats, &[now.to_string()], true).await?;
        let mut stats = rows
            .chunks_exact(STATS_ROW)
            .map(|row| {
                let (counts, oldest) = self.counts_from(&row[1..])?;
                Ok(QueueStats {
                    queue: self.field(&row[0], "queue")?,
                    pending: counts.ready + counts.delayed,
                    delayed: counts.delayed,
                    running: counts.running,
                    failed: counts.failed,
                    oldest_pending_ms: oldest
                        .map(|created| u64::try_from(now.saturating_sub(created)).unwrap_or(0)),
                    paused: self.field::<i64>(&row[7], "paused")? == 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        stats.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(stats)
    }

    pub(super) async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        let rows: Vec<Value> = self
            .eval(
                &SCRIPTS.failed,
                &[queue.unwrap_or_default().to_string()],
                true,
            )
            .await?;
        let mut summaries = self.summaries(&rows)?;
        summaries.sort_by_key(|summary| summary.id);
        Ok(summaries)
    }

    pub(super) async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        let mut args = vec![now_ms().to_string()];
        match selector {
            Selector::Ids(ids) => {
                args.push("ids".to_string());
                args.extend(ids.iter().map(TaskId::to_string));
            }
            Selector::Queue(queue) => {
                validate_queue_name(queue)?;
                args.push("queue".to_string());
                args.push(queue.clone());
            }
            Selector::All => args.push("all".to_string()),
        }
        let moved: Vec<String> = self.eval(&SCRIPTS.retry_failed, &args, false).await?;
        moved
            .chunks_exact(2)
            .map(|pair| {
                let id = pair[0]
                    .parse()
                    .map_err(|_| self.corrupt(format!("retried task id {:?}", pair[0])))?;
                Ok(RetriedTask {
                    id,
                    queue: pair[1].clone(),
                })
            })
            .collect()
    }

    pub(super) async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        let which = match which {
            PurgeWhich::Failed => "failed",
            PurgeWhich::Pending => "pending",
        };
        self.eval(
            &SCRIPTS.purge,
            &[queue.to_string(), which.to_string()],
            false,
        )
        .await
    }

    pub(super) async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        let cutoff = format!("{:016}", to_epoch_ms(before).max(0));
        self.eval(&SCRIPTS.prune_schedule_keys, &[cutoff], true)
            .await
    }

    /// Completed tasks beyond the cap or too old, a bounded chunk per script (a script blocks
    /// the server while it runs).
    pub(super) async fn prune_completed(
        &self,
        before: SystemTime,
        keep_per_queue: u64,
    ) -> Result<u64> {
        const CHUNK: u64 = 2_000;
        let args = [
            to_epoch_ms(before).to_string(),
            keep_per_queue.min(i64::MAX as u64).to_string(),
            CHUNK.to_string(),
        ];
        let mut pruned = 0;
        loop {
            let deleted: u64 = self.eval(&SCRIPTS.prune_completed, &args, true).await?;
            pruned += deleted;
            if deleted < CHUNK {
                return Ok(pruned);
            }
        }
    }

    pub(super) async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let prefix = schedule_key_prefix(schedule);
        // Keys of one schedule are contiguous: `prefix` < key < `prefix` with ':' bumped to ';'.
        let upper = format!("{};", &prefix[..prefix.len() - 1]);
        let mut command = ::redis::cmd("ZREVRANGEBYLEX");
        command
            .arg(format!("{}:keys", self.prefix))
            .arg(format!("({upper}"))
            .arg(format!("({prefix}"))
            .arg("LIMIT")
            .arg(0)
            .arg(1);
        let mut connection = self.connection().await?;
        let keys: Vec<String> = match command.query_async(&mut connection).await {
            Err(e) if e.is_connection_dropped() => command.query_async(&mut connection).await,
            result => result,
        }
        .map_err(|e| self.command_error(e))?;
        Ok(keys.first().and_then(|key| schedule_key_time(key)))
    }

    /// `SADD`/`SREM` on `P:paused_schedules`: one command, atomic, its count the change.
    pub(super) async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        validate_schedule_id(id)?;
        let mut command = ::redis::cmd(if paused { "SADD" } else { "SREM" });
        command
            .arg(format!("{}:paused_schedules", self.prefix))
            .arg(id);
        let mut connection = self.connection().await?;
        let changed: i64 = command
            .query_async(&mut connection)
            .await
            .map_err(|e| self.command_error(e))?;
        Ok(changed == 1)
    }

    pub(super) async fn paused_schedules(&self) -> Result<Vec<String>> {
        self.members(&format!("{}:paused_schedules", self.prefix))
            .await
    }
}
