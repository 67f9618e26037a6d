//! Completed tasks kept (`state = 'done'`) until pruned: by age and by a cap per queue, a
//! chunk per statement, so that no single transaction holds the write lock for long while
//! consumers settle.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use super::SqliteTransport;
use crate::Result;
use crate::task::to_epoch_ms;

const QUEUES: &str = include_str!("sql/queries/completed_queues.sql");
const CUTOFF: &str = include_str!("sql/queries/completed_cutoff.sql");
const PRUNE: &str = include_str!("sql/queries/prune_completed.sql");

/// The most tasks one pruning statement deletes.
const CHUNK: i64 = 5_000;

impl SqliteTransport {
    pub(super) fn prune_completed(&self, before: SystemTime, keep_per_queue: u64) -> Result<u64> {
        let before = to_epoch_ms(before);
        let keep = i64::try_from(keep_per_queue).unwrap_or(i64::MAX);
        let queues: Vec<String> = self.with(|conn| {
            conn.prepare_cached(QUEUES)?
                .query_map([], |row| row.get(0))?
                .collect()
        })?;
        let mut pruned = 0;
        for queue in queues {
            // Beyond the cap: the kept tasks' oldest (completion time, id) bounds what goes.
            let cutoff: Option<(i64, i64)> = self.with(|conn| {
                conn.prepare_cached(CUTOFF)?
                    .query_row(params![queue, keep], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })?;
            let (at, id) = cutoff.unwrap_or((i64::MIN, i64::MIN));
            let below = before.max(at);
            loop {
                let deleted = self.with(|conn| {
                    conn.prepare_cached(PRUNE)?
                        .execute(params![queue, below, at, id, CHUNK])
                })?;
                pruned += deleted as u64;
                if (deleted as i64) < CHUNK {
                    break;
                }
            }
        }
        Ok(pruned)
    }
}
