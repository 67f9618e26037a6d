//! Throughput history ([`crate::history`]): a hash per minute and queue whose fields are the
//! counters, added to with `HINCRBY` by one script call per recording, so that masters
//! recording the same minute need no lock; each hash expires a day after its last change.
//! The key layout is in `scripts.rs`.

use std::time::SystemTime;

use super::RedisTransport;
use super::scripts::SCRIPTS;
use crate::history::{BUCKETS, HISTORY_KEPT, check_rows, minute_of};
use crate::{Counters, HistoryRow, Result};

/// The counters as (field, amount) pairs, the zeros left out.
fn fields(c: &Counters) -> Vec<(String, u64)> {
    let mut out = vec![
        ("succeeded".to_string(), c.succeeded),
        ("failed".to_string(), c.failed),
        ("retried".to_string(), c.retried),
        ("crashed".to_string(), c.crashed),
        ("run_sum_ms".to_string(), c.run.sum_ms),
        ("wait_sum_ms".to_string(), c.wait.sum_ms),
    ];
    for (i, n) in c.run.buckets.iter().enumerate() {
        out.push((format!("run{i}"), *n));
    }
    for (i, n) in c.wait.buckets.iter().enumerate() {
        out.push((format!("wait{i}"), *n));
    }
    out.retain(|(_, n)| *n > 0);
    out
}

/// Set the counter a field names; unknown fields (a later version's) are ignored.
fn set_field(c: &mut Counters, field: &str, value: u64) {
    let bucket = |name: &str, prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < BUCKETS)
    };
    match field {
        "succeeded" => c.succeeded = value,
        "failed" => c.failed = value,
        "retried" => c.retried = value,
        "crashed" => c.crashed = value,
        "run_sum_ms" => c.run.sum_ms = value,
        "wait_sum_ms" => c.wait.sum_ms = value,
        _ => {
            if let Some(i) = bucket(field, "run") {
                c.run.buckets[i] = value;
            } else if let Some(i) = bucket(field, "wait") {
                c.wait.buckets[i] = value;
            }
        }
    }
}

impl RedisTransport {
    pub(super) async fn record_history(&self, recording: &str, rows: &[HistoryRow]) -> Result<()> {
        check_rows(rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        let oldest = minute_of(SystemTime::now() - HISTORY_KEPT);
        let mut args = vec![
            oldest.to_string(),
            HISTORY_KEPT.as_secs().to_string(),
            recording.to_string(),
        ];
        for row in rows {
            let pairs = fields(&row.counters);
            args.push(row.minute.to_string());
            args.push(row.queue.clone());
            args.push(pairs.len().to_string());
            for (field, amount) in pairs {
                args.push(field);
                args.push(amount.to_string());
            }
        }
        let _: i64 = self.eval(&SCRIPTS.history_add, &args, false).await?;
        Ok(())
    }

    pub(super) async fn history(&self, queue: Option<&str>, since: i64) -> Result<Vec<HistoryRow>> {
        let args = [since.to_string(), queue.unwrap_or("").to_string()];
        let flat: Vec<String> = self.eval(&SCRIPTS.history, &args, true).await?;
        let number = |s: &str| -> Result<u64> {
            s.parse()
                .map_err(|_| self.corrupt(format_args!("history value {s:?}")))
        };
        let mut rows = Vec::new();
        let mut rest = flat.as_slice();
        while let [queue, minute, n, tail @ ..] = rest {
            let n = usize::try_from(number(n)?).unwrap_or(usize::MAX);
            if tail.len() < 2 * n {
                return Err(self.corrupt("a truncated history row"));
            }
            let mut counters = Counters::default();
            for pair in tail[..2 * n].chunks(2) {
                set_field(&mut counters, &pair[0], number(&pair[1])?);
            }
            rows.push(HistoryRow {
                queue: queue.clone(),
                minute: minute
                    .parse()
                    .map_err(|_| self.corrupt(format_args!("history minute {minute:?}")))?,
                counters,
            });
            rest = &tail[2 * n..];
        }
        if !rest.is_empty() {
            return Err(self.corrupt("a truncated history row"));
        }
        rows.sort_by(|a, b| (&a.queue, a.minute).cmp(&(&b.queue, b.minute)));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_their_fields() {
        let mut c = Counters {
            succeeded: 3,
            crashed: 2,
            ..Counters::default()
        };
        c.run.observe(std::time::Duration::from_millis(7));
        c.wait.observe(std::time::Duration::from_secs(4000));
        let mut back = Counters::default();
        for (field, n) in fields(&c) {
            set_field(&mut back, &field, n);
        }
        assert_eq!(back, c);
        set_field(&mut back, "run99", 5); // out of range: ignored
        set_field(&mut back, "later", 5);
        assert_eq!(back, c);
    }
}
