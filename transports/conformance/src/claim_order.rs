//! Which task a claim gets: the earliest due (`run_at`), then the first submitted, within a
//! queue; nothing from other queues; every task exactly once under concurrent claimers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{Failure, QueueCounts, SubmitOptions, TaskId, Transport};
use serde_json::{Value, json};

use crate::{
    assert_claimed_once, claim, claim_concurrently, counts, ready, submit, submit_with, unique,
};

/// The original test's sequence: counts, FIFO claims, nothing when empty, queue isolation.
pub async fn case_original_sequence(t: Arc<dyn Transport>) {
    let (queue_foo, queue_bar, owner) = (unique("foo"), unique("bar"), unique("owner"));
    assert_eq!(counts(&t, &queue_foo).await, QueueCounts::default());
    let first = submit(&t, &queue_foo, json!({"foo": 1})).await;
    let second = submit(&t, &queue_foo, json!({"foo": 2})).await;
    assert_eq!(counts(&t, &queue_foo).await, ready(2));

    for (id, value) in [(first, 1), (second, 2)] {
        let task = claim(&t, &queue_foo, &owner)
            .await
            .expect("a task is ready");
        assert_eq!(
            (task.id, &task.queue, &task.owner),
            (id, &queue_foo, &owner)
        );
        assert_eq!(Value::Object(task.payload.clone()), json!({"foo": value}));
        assert_eq!((task.attempt, task.errors, task.crashes), (1, 0, 0));
        assert!(t.complete(&task.lease(), &[]).await.expect("complete"));
    }
    assert!(
        claim(&t, &queue_foo, &owner).await.is_none(),
        "the queue is empty"
    );
    assert_eq!(counts(&t, &queue_foo).await, QueueCounts::default());

    submit(&t, &queue_bar, json!({"bar": 1})).await;
    assert!(
        claim(&t, &queue_foo, &owner).await.is_none(),
        "another queue's task is not claimable"
    );
    assert_eq!(counts(&t, &queue_bar).await, ready(1));
    let task = claim(&t, &queue_bar, &owner).await.expect("bar's task");
    assert_eq!(Value::Object(task.payload), json!({"bar": 1}));
    assert_eq!(
        counts(&t, &unique("never_used")).await,
        QueueCounts::default()
    );
}

/// Concurrent claimers get every task exactly once.
pub async fn case_concurrent_claimers(t: Arc<dyn Transport>) {
    const TASKS: usize = 200;
    let queue = unique("concurrent");
    let mut submitted = BTreeSet::new();
    for n in 0..TASKS {
        submitted.insert(submit(&t, &queue, json!({"n": n})).await);
    }
    let claimed = claim_concurrently(&[Arc::clone(&t)], &queue, 4).await;
    assert_claimed_once(claimed, &submitted);
    assert_eq!(counts(&t, &queue).await, QueueCounts::default());
}

/// Due time first, then submission order, whatever made a task due: delayed submits, a retry
/// and fresh tasks interleaved. Due times are 400 ms apart, far more than a broker's delay
/// precision (RabbitMQ: ~8 ms), so every transport must give exactly this order.
pub async fn case_due_time_then_submission_order(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("order"), unique("owner"));
    let start = SystemTime::now();
    let at = |ms: u64| SubmitOptions {
        run_at: Some(start + Duration::from_millis(ms)),
        ..SubmitOptions::default()
    };
    let delayed = |id: Option<TaskId>| id.expect("no idempotency key, so always enqueued");
    let late = delayed(submit_with(&t, &queue, json!({"n": "late"}), at(1200)).await);
    let early = delayed(submit_with(&t, &queue, json!({"n": "early"}), at(400)).await);
    // Submitted first, claimed at once, then failed with a retry due between the two delays.
    let retried = submit(&t, &queue, json!({"n": "retried"})).await;
    let task = claim(&t, &queue, &owner).await.expect("the fresh task");
    assert_eq!(task.id, retried, "the only task due now");
    let retry_at = start + Duration::from_millis(800);
    assert!(
        t.fail(&task.lease(), &Failure::error("again"), Some(retry_at))
            .await
            .expect("fail")
    );
    let fresh = [
        submit(&t, &queue, json!({"n": "fresh 1"})).await,
        submit(&t, &queue, json!({"n": "fresh 2"})).await,
    ];

    // Wait (bounded) until all five are due, then claim them in one go.
    let deadline = start + Duration::from_secs(30);
    loop {
        let c = counts(&t, &queue).await;
        if c.ready == 5 {
            break;
        }
        assert!(
            SystemTime::now() < deadline,
            "tasks never became ready: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broker may count a task due a moment before it can hand it out (RabbitMQ: still in
    // its last delay hop): an empty claim before all five are in is retried.
    let mut order = Vec::new();
    while order.len() < 5 {
        match claim(&t, &queue, &owner).await {
            Some(task) => {
                order.push(task.id);
                assert!(t.complete(&task.lease(), &[]).await.expect("complete"));
            }
            None => {
                assert!(SystemTime::now() < deadline, "claimed only {order:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(claim(&t, &queue, &owner).await.is_none(), "five tasks only");
    assert_eq!(
        order,
        [fresh[0], fresh[1], early, retried, late],
        "fresh {fresh:?}, early {early}, retried {retried}, late {late}"
    );
}
