//! Completed tasks, kept in the `completed` table (a completion deletes the task from `tasks`
//! and inserts it there, in the same statement) until pruned by age and by a cap per queue,
//! a chunk per statement so that no statement holds many row locks for long.

use std::time::SystemTime;

use super::PgsqlTransport;
use super::rows::clamp_time;
use crate::Result;

/// The most tasks one pruning statement deletes.
const CHUNK: i64 = 5_000;

impl PgsqlTransport {
    pub(super) async fn prune_completed(
        &self,
        before: SystemTime,
        keep_per_queue: u64,
    ) -> Result<u64> {
        let before = clamp_time(before);
        let keep = i64::try_from(keep_per_queue).unwrap_or(i64::MAX);
        let queues = self.texts(&self.sql.completed_queues).await?;
        let mut pruned = 0;
        for queue in queues {
            pruned += self
                .run(async {
                    let client = self.client().await?;
                    // Beyond the cap: the kept tasks' oldest (completion time, id) bounds what
                    // goes.
                    let stmt = client.prepare_cached(&self.sql.completed_cutoff).await?;
                    let cutoff = client.query_opt(&stmt, &[&queue, &keep]).await?;
                    let (at, id): (Option<SystemTime>, i64) = match &cutoff {
                        Some(row) => (Some(row.try_get(0)?), row.try_get(1)?),
                        None => (None, i64::MIN),
                    };
                    let below = at.map_or(before, |at| at.max(before));
                    let stmt = client.prepare_cached(&self.sql.prune_completed).await?;
                    let mut pruned = 0;
                    loop {
                        let deleted = client
                            .execute(&stmt, &[&queue, &below, &at, &id, &CHUNK])
                            .await?;
                        pruned += deleted;
                        if deleted < CHUNK as u64 {
                            return Ok(pruned);
                        }
                    }
                })
                .await?;
        }
        Ok(pruned)
    }
}
