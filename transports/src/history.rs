//! Throughput history: what happened to a queue's tasks, minute by minute.
//!
//! The children count their outcomes, run times and waits on their beacons; their master adds
//! them up per queue and per minute ([`Counters`]), publishes the totals since it started in
//! its heartbeat (the console's counters and histograms in `/metrics`), and every
//! [`Transport::history_interval`](crate::Transport::history_interval) adds the minutes it
//! saw to the transport with [`record_history`](crate::Transport::record_history). Several
//! masters add to the same minute; [`history`](crate::Transport::history) reads the sums.
//! Nothing here is on a task's path: a task costs a few atomic adds in its child.
//!
//! Rows are kept for [`HISTORY_KEPT`] (at least 24 hours), pruned by the backend's upkeep or
//! by the broker's own expiry.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::task::to_epoch_ms;

/// How long history rows are kept: a day, and an hour of margin for the chart of "the last
/// 24 hours".
pub const HISTORY_KEPT: Duration = Duration::from_secs(25 * 3600);

/// The upper bounds of the histograms' buckets, in milliseconds; the last bucket counts
/// everything above the last bound. Fixed, so that rows of every master add up.
pub const BUCKET_BOUNDS_MS: [u64; 12] = [
    1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 60_000, 300_000, 3_600_000,
];

/// How many buckets a [`Histogram`] has: one per bound, and one above them.
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

/// Durations counted in fixed buckets, with their sum: what is needed to add histograms of
/// several masters and minutes, and still tell a mean and an estimated quantile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// How many durations fell in each bucket (not cumulative).
    pub buckets: [u64; BUCKETS],
    /// Their sum, in milliseconds.
    pub sum_ms: u64,
}

impl Histogram {
    /// The bucket a duration falls in.
    pub fn bucket_of(duration: Duration) -> usize {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        BUCKET_BOUNDS_MS
            .iter()
            .position(|&bound| us <= bound * 1000)
            .unwrap_or(BUCKET_BOUNDS_MS.len())
    }

    pub fn observe(&mut self, duration: Duration) {
        self.buckets[Self::bucket_of(duration)] += 1;
        self.sum_ms = self
            .sum_ms
            .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine = mine.saturating_add(theirs);
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
    }

    /// What was added since `earlier` (a snapshot of the same growing histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut delta = *self;
        for (d, e) in delta.buckets.iter_mut().zip(earlier.buckets) {
            *d = d.saturating_sub(e);
        }
        delta.sum_ms = delta.sum_ms.saturating_sub(earlier.sum_ms);
        delta
    }

    /// The mean, in milliseconds (`None` without observations).
    pub fn mean_ms(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_ms as f64 / count as f64)
    }

    /// The `q` quantile (0 to 1), in milliseconds, estimated as Prometheus'
    /// `histogram_quantile` does: linearly within the bucket it falls in. In the last bucket
    /// (above every bound) the answer is the last bound: "at least this".
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = BUCKET_BOUNDS_MS.get(i) else {
                    return Some(BUCKET_BOUNDS_MS[BUCKET_BOUNDS_MS.len() - 1] as f64);
                };
                let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_MS[i - 1] };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower as f64 + (upper - lower) as f64 * within);
            }
            below += n;
        }
        None
    }
}

/// What happened to one queue's tasks over some time (a minute of history, or since a master
/// started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Attempts that completed.
    pub succeeded: u64,
    /// Attempts that failed for good (the task is kept as failed).
    pub failed: u64,
    /// Attempts that failed and were scheduled to run again.
    pub retried: u64,
    /// Attempts whose child died (signal, exit, timeout): counted by the master.
    pub crashed: u64,
    /// How long attempts ran, in the worker (crashes not included).
    pub run: Histogram,
    /// How long first attempts waited, from their submission to their start.
    pub wait: Histogram,
}

impl Counters {
    /// Every attempt that came to an outcome.
    pub fn processed(&self) -> u64 {
        self.succeeded + self.failed + self.retried + self.crashed
    }

    /// Nothing at all was counted (a delta read half-way through a child's update may hold
    /// only a run time: it is not empty).
    pub fn is_empty(&self) -> bool {
        *self == Counters::default()
    }

    pub fn add(&mut self, other: &Counters) {
        self.succeeded = self.succeeded.saturating_add(other.succeeded);
        self.failed = self.failed.saturating_add(other.failed);
        self.retried = self.retried.saturating_add(other.retried);
        self.crashed = self.crashed.saturating_add(other.crashed);
        self.run.add(&other.run);
        self.wait.add(&other.wait);
    }

    /// What was added since `earlier` (a snapshot of the same growing counters).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            succeeded: self.succeeded.saturating_sub(earlier.succeeded),
            failed: self.failed.saturating_sub(earlier.failed),
            retried: self.retried.saturating_sub(earlier.retried),
            crashed: self.crashed.saturating_sub(earlier.crashed),
            run: self.run.since(&earlier.run),
            wait: self.wait.since(&earlier.wait),
        }
    }
}

/// One queue's counters over one minute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub queue: String,
    /// The minute, counted from the Unix epoch (`epoch seconds / 60`).
    pub minute: i64,
    #[serde(flatten)]
    pub counters: Counters,
}

/// The minute `t` falls in, counted from the Unix epoch.
pub fn minute_of(t: SystemTime) -> i64 {
    to_epoch_ms(t).div_euclid(60_000)
}

/// Add `rows` into `into` (kept sorted by queue, then minute), merging rows of the same queue
/// and minute: how a reader sums what several masters recorded.
pub fn merge(into: &mut Vec<HistoryRow>, rows: impl IntoIterator<Item = HistoryRow>) {
    for row in rows {
        match into.binary_search_by(|r| (r.queue.as_str(), r.minute).cmp(&(&row.queue, row.minute)))
        {
            Ok(i) => into[i].counters.add(&row.counters),
            Err(i) => into.insert(i, row),
        }
    }
}

/// Every row must name a valid queue (the backends build keys and names from it).
pub fn check_rows(rows: &[HistoryRow]) -> crate::Result<()> {
    rows.iter()
        .try_for_each(|row| crate::validate_queue_name(&row.queue))
}

/// Whether a reading asked for `row`: of `queue` (every queue with `None`), from minute `since`
/// on.
pub fn wanted(row: &HistoryRow, queue: Option<&str>, since: i64) -> bool {
    row.minute >= since && queue.is_none_or(|q| q == row.queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_fall_in_the_bucket_of_the_first_bound_they_do_not_exceed() {
        assert_eq!(Histogram::bucket_of(ms(0)), 0);
        assert_eq!(Histogram::bucket_of(ms(1)), 0);
        assert_eq!(Histogram::bucket_of(Duration::from_micros(1500)), 1);
        assert_eq!(Histogram::bucket_of(ms(3_600_000)), 11);
        assert_eq!(Histogram::bucket_of(ms(3_600_001)), 12);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket_and_stop_at_the_last_bound() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.95), None);
        for _ in 0..100 {
            h.observe(ms(20)); // bucket (10, 50]
        }
        assert_eq!(h.mean_ms(), Some(20.0));
        let p95 = h.quantile_ms(0.95).unwrap();
        assert!((10.0..=50.0).contains(&p95), "{p95}");
        assert_eq!(h.quantile_ms(1.0), Some(50.0));
        let mut slow = Histogram::default();
        slow.observe(Duration::from_secs(7200));
        assert_eq!(slow.quantile_ms(0.5), Some(3_600_000.0));
    }

    #[test]
    fn counters_add_up_and_give_their_deltas_back() {
        let mut a = Counters {
            succeeded: 3,
            crashed: 1,
            ..Counters::default()
        };
        a.run.observe(ms(3));
        let before = a;
        let mut b = Counters {
            failed: 2,
            retried: 1,
            ..Counters::default()
        };
        b.wait.observe(ms(70));
        a.add(&b);
        assert_eq!(a.processed(), 7);
        assert_eq!(a.since(&before), b);
    }

    #[test]
    fn merging_sums_rows_of_the_same_queue_and_minute_and_keeps_them_sorted() {
        let row = |queue: &str, minute, succeeded| HistoryRow {
            queue: queue.into(),
            minute,
            counters: Counters {
                succeeded,
                ..Counters::default()
            },
        };
        let mut all = Vec::new();
        merge(&mut all, [row("b", 2, 1), row("a", 5, 1), row("b", 1, 1)]);
        merge(&mut all, [row("b", 2, 4)]);
        let seen: Vec<_> = all
            .iter()
            .map(|r| (r.queue.as_str(), r.minute, r.counters.succeeded))
            .collect();
        assert_eq!(seen, [("a", 5, 1), ("b", 1, 1), ("b", 2, 5)]);
        assert_eq!(minute_of(SystemTime::UNIX_EPOCH + ms(120_500)), 2);
    }
}
