//! Which task a claim gets: FIFO within a queue, nothing from other queues, and every task
//! exactly once under concurrent claimers.

use std::collections::BTreeSet;
use std::sync::Arc;

use rex_transport::{QueueCounts, Transport};
use serde_json::{Value, json};

use crate::{assert_claimed_once, claim, claim_concurrently, counts, ready, submit, unique};

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
