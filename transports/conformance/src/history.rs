//! Throughput history: per-minute counters that several masters add to.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::history::minute_of;
use rex_transport::{Counters, HistoryRow, Transport};

use crate::unique;

fn row(queue: &str, minute: i64, succeeded: u64, crashed: u64, run_ms: u64) -> HistoryRow {
    let mut counters = Counters {
        succeeded,
        crashed,
        ..Counters::default()
    };
    counters.run.observe(Duration::from_millis(run_ms));
    counters.wait.observe(Duration::from_millis(run_ms * 2));
    HistoryRow {
        queue: queue.to_string(),
        minute,
        counters,
    }
}

/// Rows of the same queue and minute recorded by several calls (several masters) add up,
/// histograms included, and a recording repeated under its name adds once; a reading selects by queue and from a minute on, sorted by queue and
/// minute.
pub async fn case_history_adds_up(t: Arc<dyn Transport>) {
    let (a, b) = (unique("hist_a"), unique("hist_b"));
    let now = minute_of(SystemTime::now());
    let (first, second) = (unique("recording"), unique("recording"));
    t.record_history(&first, &[row(&a, now - 2, 1, 0, 3), row(&a, now, 2, 1, 30)])
        .await
        .expect("record");
    t.record_history(
        &second,
        &[row(&a, now, 4, 0, 30), row(&b, now - 1, 7, 0, 2000)],
    )
    .await
    .expect("record again");
    // A recording repeated (its caller never got the answer) adds nothing.
    t.record_history(&first, &[row(&a, now - 2, 1, 0, 3), row(&a, now, 2, 1, 30)])
        .await
        .expect("repeat");
    t.record_history(&unique("recording"), &[])
        .await
        .expect("nothing to record");

    let mut expected_now = row(&a, now, 2, 1, 30);
    expected_now.counters.add(&row(&a, now, 4, 0, 30).counters);
    let of_a = t.history(Some(&a), now - 60).await.expect("history");
    assert_eq!(of_a, vec![row(&a, now - 2, 1, 0, 3), expected_now.clone()]);
    assert_eq!(of_a[1].counters.run.count(), 2);
    assert_eq!(of_a[1].counters.run.sum_ms, 60);

    let recent = t.history(Some(&a), now - 1).await.expect("history");
    assert_eq!(recent, vec![expected_now.clone()], "from a minute on");

    let all: Vec<HistoryRow> = t
        .history(None, now - 1)
        .await
        .expect("history")
        .into_iter()
        .filter(|r| r.queue == a || r.queue == b)
        .collect();
    let mut expected = vec![expected_now, row(&b, now - 1, 7, 0, 2000)];
    expected.sort_by(|x, y| (&x.queue, x.minute).cmp(&(&y.queue, y.minute)));
    assert_eq!(all, expected, "every queue, sorted by queue then minute");
}
