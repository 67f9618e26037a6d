//! Throughput history ([`crate::history`]): one row per minute and queue, added to by an
//! upsert that sums every counter and the histograms' buckets element by element, so that
//! masters recording the same minute at once need no lock. Rows older than
//! [`HISTORY_KEPT`] are deleted by each recording.

use std::time::SystemTime;

use tokio_postgres::Row;

use super::PgsqlTransport;
use super::connection::Fail;
use super::rows::{get_u64, text};
use crate::history::{BUCKETS, HISTORY_KEPT, check_rows, minute_of};
use crate::{Counters, Histogram, HistoryRow, Result};

/// A count as stored (BIGINT); counts beyond `i64::MAX` do not happen.
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn buckets(h: &Histogram) -> Vec<i64> {
    h.buckets.iter().copied().map(stored).collect()
}

fn histogram(row: &Row, buckets_at: usize, sum_at: usize) -> Result<Histogram, Fail> {
    let stored: Vec<i64> = row.try_get(buckets_at)?;
    let mut h = Histogram {
        sum_ms: get_u64(row, sum_at)?,
        ..Histogram::default()
    };
    if stored.len() > BUCKETS || stored.iter().any(|n| *n < 0) {
        return Err(Fail::Data(format!("a history row has buckets {stored:?}")));
    }
    for (bucket, n) in h.buckets.iter_mut().zip(stored) {
        *bucket = n as u64;
    }
    Ok(h)
}

impl PgsqlTransport {
    pub(super) async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        check_rows(rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let oldest = minute_of(now - HISTORY_KEPT);
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let prune = tx
                .prepare_cached(&self.sql.history_recordings_prune)
                .await?;
            tx.execute(&prune, &[&(now - HISTORY_KEPT)]).await?;
            let named = tx.prepare_cached(&self.sql.history_recording).await?;
            if tx.execute(&named, &[&text(recording), &now]).await? == 0 {
                return Ok(()); // recorded already: the transaction is rolled back
            }
            let add = tx.prepare_cached(&self.sql.history_add).await?;
            for row in rows {
                let c = &row.counters;
                tx.execute(
                    &add,
                    &[
                        &row.minute,
                        &text(&row.queue),
                        &stored(c.succeeded),
                        &stored(c.failed),
                        &stored(c.retried),
                        &stored(c.crashed),
                        &buckets(&c.run),
                        &stored(c.run.sum_ms),
                        &buckets(&c.wait),
                        &stored(c.wait.sum_ms),
                    ],
                )
                .await?;
            }
            let prune = tx.prepare_cached(&self.sql.history_prune).await?;
            tx.execute(&prune, &[&oldest]).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        let queue = queue.map(text);
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.history).await?;
            let rows = client.query(&stmt, &[&since, &queue]).await?;
            rows.iter()
                .map(|row| {
                    Ok(HistoryRow {
                        queue: row.try_get(0)?,
                        minute: row.try_get(1)?,
                        counters: Counters {
                            succeeded: get_u64(row, 2)?,
                            failed: get_u64(row, 3)?,
                            retried: get_u64(row, 4)?,
                            crashed: get_u64(row, 5)?,
                            run: histogram(row, 6, 7)?,
                            wait: histogram(row, 8, 9)?,
                        },
                    })
                })
                .collect()
        })
        .await
    }
}
