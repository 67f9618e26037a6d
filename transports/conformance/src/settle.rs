//! Settling an attempt: `complete` (with follow-up submits), `settle_and_claim` with a window
//! of one (a consumer's steady state without prefetch), and `release`, which gives the attempt
//! back. Batches of several are in `batches.rs`.

use std::sync::Arc;

use rex_transport::{Failure, Outcome, Payload, QueueCounts, Settlement, Submit, Task, Transport};
use serde_json::{Value, json};

use crate::{LEASE, assert_invalid_queue, claim, counts, payload, ready, submit, unique};

/// `complete` enqueues its submits with the completion, and validates them first.
pub async fn case_complete_with_submits(t: Arc<dyn Transport>) {
    let (queue_foo, queue_bar, owner) = (unique("foo"), unique("bar"), unique("owner"));
    submit(&t, &queue_foo, json!({})).await;
    let task = claim(&t, &queue_foo, &owner).await.expect("claimable");

    let bad = [
        Submit {
            queue: queue_bar.clone(),
            payload: payload(json!({"x": 0})),
        },
        Submit {
            queue: "BADNAME".into(),
            payload: Payload::new(),
        },
    ];
    assert_invalid_queue(t.complete(&task.lease(), &bad).await);
    assert_eq!(
        counts(&t, &queue_foo).await.running,
        1,
        "a refused completion changes nothing"
    );
    assert_eq!(
        counts(&t, &queue_bar).await,
        QueueCounts::default(),
        "nothing of it was submitted"
    );

    let submits = [
        Submit {
            queue: queue_bar.clone(),
            payload: payload(json!({"x": 1})),
        },
        Submit {
            queue: queue_foo.clone(),
            payload: payload(json!({"y": 2})),
        },
    ];
    assert!(t.complete(&task.lease(), &submits).await.expect("complete"));
    assert_eq!(counts(&t, &queue_foo).await, ready(1));
    assert_eq!(counts(&t, &queue_bar).await, ready(1));
    let follow_up = claim(&t, &queue_bar, &owner)
        .await
        .expect("submitted on completion");
    assert_eq!(Value::Object(follow_up.payload), json!({"x": 1}));
    let follow_up = claim(&t, &queue_foo, &owner)
        .await
        .expect("submitted on completion");
    assert_eq!(Value::Object(follow_up.payload), json!({"y": 2}));
    assert_eq!(follow_up.attempt, 1);
}

/// Completing and claiming in one call with a window of one: the attempt is done (its
/// follow-ups enqueued) and the next task is leased to the same owner; a stale lease completes
/// nothing but still claims.
pub async fn case_complete_and_claim(t: Arc<dyn Transport>) {
    let (queue, other, owner) = (unique("cac"), unique("cac_next"), unique("owner"));
    let first = submit(&t, &queue, json!({"n": 1})).await;
    let second = submit(&t, &queue, json!({"n": 2})).await;
    let task = claim(&t, &queue, &owner).await.expect("first task");
    assert_eq!(task.id, first);
    let follow_up = Submit {
        queue: other.clone(),
        payload: payload(json!({"after": 1})),
    };
    let (done, next) = complete_and_claim(&t, &task, vec![follow_up], &queue, &owner).await;
    assert!(done);
    let next = next.expect("the second task is claimed at once");
    assert_eq!(
        (next.id, next.attempt, next.owner.as_str()),
        (second, 1, owner.as_str())
    );
    assert_eq!(counts(&t, &other).await, ready(1));
    // The old lease is stale now: nothing completes, the (empty) queue yields nothing.
    let (done, none) = complete_and_claim(&t, &task, vec![], &queue, &owner).await;
    assert!(!done);
    assert!(none.is_none());
    let (done, none) = complete_and_claim(&t, &next, vec![], &queue, &owner).await;
    assert!(done && none.is_none());
    assert!(counts(&t, &queue).await.is_drained());
}

/// `settle_and_claim` of one completion with a window of one.
async fn complete_and_claim(
    t: &Arc<dyn Transport>,
    task: &Task,
    submits: Vec<Submit>,
    queue: &str,
    owner: &str,
) -> (bool, Option<Task>) {
    let batch = [Settlement::Complete {
        lease: task.lease(),
        submits,
        result: None,
    }];
    let (applied, next) = t
        .settle_and_claim(&batch, queue, owner, LEASE, 1)
        .await
        .expect("settle_and_claim");
    assert_eq!(applied.len(), 1, "one result per settlement");
    assert!(next.len() <= 1, "a window of one claims at most one task");
    (applied[0], next.into_iter().next())
}

/// `release` returns the task without using up an attempt, and records why.
/// A released task keeps its place in the claim order: it runs before tasks submitted after
/// it (a warm shutdown's unstarted tasks are the next to run, not the last). RabbitMQ puts
/// it back at the end of its queue (see the transports docs).
pub async fn case_release_keeps_place(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("place"), unique("owner"));
    let first_id = submit(&t, &queue, json!({"n": 1})).await;
    for n in 2..=3 {
        submit(&t, &queue, json!({ "n": n })).await;
    }
    let first = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!(first.id, first_id);
    assert!(
        t.release(&first.lease(), "shutting down")
            .await
            .expect("release")
    );
    if t.leases_held_by_broker() {
        return;
    }
    let again = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!(again.id, first_id, "the released task lost its place");
}

pub async fn case_release_keeps_attempt(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("release"), unique("owner"));
    let id = submit(&t, &queue, json!({})).await;
    let first = claim(&t, &queue, &owner).await.expect("claimable");
    assert!(
        t.release(&first.lease(), "shutting down")
            .await
            .expect("release")
    );
    assert_eq!(counts(&t, &queue).await, ready(1));
    let second = claim(&t, &queue, &owner)
        .await
        .expect("released tasks are ready now");
    assert_eq!(
        (second.id, second.attempt, second.errors, second.crashes),
        (id, first.attempt, 0, 0)
    );

    assert!(
        t.fail(&second.lease(), &Failure::error("Oops!"), None)
            .await
            .expect("fail")
    );
    let summary = t
        .failed(Some(&queue))
        .await
        .expect("failed")
        .pop()
        .expect("failed task");
    assert_eq!(summary.attempts, 1);
    let released = &summary.history[0];
    assert_eq!((released.attempt, released.outcome), (1, Outcome::Released));
    assert_eq!(released.reason.as_deref(), Some("shutting down"));
    assert_eq!(
        summary
            .history
            .iter()
            .map(|a| a.outcome)
            .collect::<Vec<_>>(),
        [Outcome::Released, Outcome::Error]
    );
}
