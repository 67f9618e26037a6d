//! `stats`: one row per queue with tasks, sorted by name.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{SubmitOptions, Transport};
use serde_json::json;

use crate::{claim, failed_task, submit, submit_with, unique};

/// `stats`: one row per queue with tasks, sorted by name; completed tasks do not count.
pub async fn case_stats(t: Arc<dyn Transport>) {
    let suffix = unique("s");
    let [a, b, c] = ["stats_a", "stats_b", "stats_c"].map(|base| format!("{base}_{suffix}"));
    let owner = unique("owner");
    submit(&t, &a, json!({})).await;
    submit(&t, &a, json!({})).await;
    submit(&t, &a, json!({})).await;
    claim(&t, &a, &owner).await.expect("claimable");
    failed_task(&t, &b, &owner).await;
    let later = SystemTime::now() + Duration::from_secs(3600);
    submit_with(
        &t,
        &b,
        json!({}),
        SubmitOptions {
            run_at: Some(later),
            ..SubmitOptions::default()
        },
    )
    .await;
    submit(&t, &c, json!({})).await;
    let done = claim(&t, &c, &owner).await.expect("claimable");
    assert!(t.complete(&done.lease(), &[]).await.expect("complete"));

    let stats = t.stats().await.expect("stats");
    assert!(
        stats.windows(2).all(|w| w[0].queue < w[1].queue),
        "sorted by queue, one row each"
    );
    let mine: Vec<_> = stats
        .iter()
        .filter(|s| s.queue.ends_with(&suffix))
        .collect();
    assert_eq!(
        mine.iter().map(|s| s.queue.as_str()).collect::<Vec<_>>(),
        [a.as_str(), b.as_str()]
    );
    assert_eq!(
        (
            mine[0].pending,
            mine[0].delayed,
            mine[0].running,
            mine[0].failed
        ),
        (2, 0, 1, 0)
    );
    // A broker-held transport (RabbitMQ) cannot see the age of the messages it queues
    // without taking them: it reports no `oldest_pending_ms`.
    assert!(mine[0].oldest_pending_ms.is_some() || t.leases_held_by_broker());
    assert_eq!(
        (
            mine[1].pending,
            mine[1].delayed,
            mine[1].running,
            mine[1].failed
        ),
        (1, 1, 0, 1)
    );
}
