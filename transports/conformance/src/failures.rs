//! Failures and their redrive: `fail` with and without a retry time, `retry_failed`, and
//! `purge`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{
    Failure, Outcome, PurgeWhich, QueueCounts, RetriedTask, Selector, SubmitOptions, TaskId,
    TaskState, Transport,
};
use serde_json::{Value, json};

use crate::{claim, counts, failed_task, ready, submit, submit_with, unique};

/// A failure with `retry_at` makes the task pending again, but only ready at that time.
pub async fn case_fail_with_retry(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("retry"), unique("owner"));
    let id = submit(&t, &queue, json!({})).await;
    let task = claim(&t, &queue, &owner).await.expect("claimable");
    let retry_at = SystemTime::now() + Duration::from_millis(300);
    assert!(
        t.fail(&task.lease(), &Failure::error("Oops!"), Some(retry_at))
            .await
            .expect("fail")
    );

    let c = counts(&t, &queue).await;
    assert_eq!((c.ready, c.delayed, c.running, c.failed), (0, 1, 0, 0));
    // A broker-held transport (RabbitMQ) keeps delayed tasks in TTL queues it cannot look
    // into: it reports no `next_run_at`.
    if !t.leases_held_by_broker() {
        let next = c.next_run_at.expect("next_run_at of the delayed task");
        assert!(
            next.duration_since(retry_at)
                .unwrap_or_else(|e| e.duration())
                < Duration::from_millis(2)
        );
    }
    assert!(
        claim(&t, &queue, &owner).await.is_none(),
        "not ready before retry_at"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(counts(&t, &queue).await, ready(1));
    let again = claim(&t, &queue, &owner)
        .await
        .expect("ready after retry_at");
    assert_eq!(
        (again.id, again.attempt, again.errors, again.crashes),
        (id, 2, 1, 0)
    );
}

/// A failure without retry keeps the task as `failed`, with its error and history.
pub async fn case_fail_without_retry(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("failing"), unique("owner"));
    let first = failed_task(&t, &queue, &owner).await;
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            failed: 1,
            ..QueueCounts::default()
        }
    );
    assert!(
        claim(&t, &queue, &owner).await.is_none(),
        "failed tasks are not claimable"
    );

    // A crash retried now, then an error for good.
    let second = submit(&t, &queue, json!({"n": 2})).await;
    let task = claim(&t, &queue, &owner).await.expect("claimable");
    assert!(
        t.fail(
            &task.lease(),
            &Failure::crash("killed by SIGKILL"),
            Some(SystemTime::now())
        )
        .await
        .expect("fail")
    );
    let task = claim(&t, &queue, &owner).await.expect("retried now");
    assert_eq!(
        (task.id, task.attempt, task.errors, task.crashes),
        (second, 2, 0, 1)
    );
    assert!(
        t.fail(&task.lease(), &Failure::error("Oops!"), None)
            .await
            .expect("fail")
    );

    let failed = t.failed(Some(&queue)).await.expect("failed");
    assert_eq!(
        failed.iter().map(|s| s.id).collect::<Vec<_>>(),
        [first, second],
        "oldest first"
    );
    let summary = &failed[1];
    assert_eq!((&summary.queue, summary.state), (&queue, TaskState::Failed));
    assert_eq!(Value::Object(summary.payload.clone()), json!({"n": 2}));
    assert_eq!(
        (summary.attempts, summary.errors, summary.crashes),
        (2, 1, 1)
    );
    assert_eq!(summary.last_error.as_deref(), Some("Oops!"));
    let history: Vec<_> = summary
        .history
        .iter()
        .map(|a| (a.attempt, a.owner.as_str(), a.outcome))
        .collect();
    assert_eq!(
        history,
        [
            (1, owner.as_str(), Outcome::Crash),
            (2, owner.as_str(), Outcome::Error)
        ]
    );
    assert_eq!(
        summary.history[0].reason.as_deref(),
        Some("killed by SIGKILL")
    );
    assert!(summary.history[1].finished_at >= summary.history[0].finished_at);

    let all = t.failed(None).await.expect("failed");
    let mine: Vec<_> = all
        .iter()
        .filter(|s| s.queue == queue)
        .map(|s| s.id)
        .collect();
    assert_eq!(mine, [first, second]);
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            failed: 2,
            ..QueueCounts::default()
        }
    );
}

/// The tasks `retry_failed` says it moved, sorted.
fn moved(tasks: Vec<RetriedTask>) -> Vec<(TaskId, String)> {
    let mut moved: Vec<_> = tasks.into_iter().map(|t| (t.id, t.queue)).collect();
    moved.sort();
    moved
}

/// `retry_failed` by ids, by queue and all; counters reset, history kept; it says which tasks
/// it moved (their `retried` events name them).
pub async fn case_retry_failed(t: Arc<dyn Transport>) {
    let (q1, q2, owner) = (unique("retry_one"), unique("retry_two"), unique("owner"));
    let mut in_q1 = Vec::new();
    for _ in 0..3 {
        in_q1.push(failed_task(&t, &q1, &owner).await);
    }
    let in_q2 = failed_task(&t, &q2, &owner).await;

    assert_eq!(
        moved(
            t.retry_failed(&Selector::Ids(vec![in_q1[1], in_q2 + 1_000_000]))
                .await
                .expect("retry")
        ),
        vec![(in_q1[1], q1.clone())]
    );
    assert_eq!(
        counts(&t, &q1).await,
        QueueCounts {
            ready: 1,
            failed: 2,
            ..QueueCounts::default()
        }
    );
    let task = claim(&t, &q1, &owner).await.expect("retried");
    assert_eq!(
        (task.id, task.attempt, task.errors, task.crashes),
        (in_q1[1], 1, 0, 0)
    );
    assert_eq!(
        t.retry_failed(&Selector::Ids(vec![in_q1[1]]))
            .await
            .expect("retry"),
        vec![],
        "only failed tasks"
    );
    assert!(
        t.fail(&task.lease(), &Failure::error("again"), None)
            .await
            .expect("fail")
    );
    let summary = t
        .failed(Some(&q1))
        .await
        .expect("failed")
        .into_iter()
        .find(|s| s.id == in_q1[1]);
    let summary = summary.expect("failed again");
    assert_eq!(
        (summary.attempts, summary.errors, summary.history.len()),
        (1, 1, 2),
        "history is kept"
    );

    let mut expected: Vec<_> = in_q1.iter().map(|id| (*id, q1.clone())).collect();
    expected.sort();
    assert_eq!(
        moved(
            t.retry_failed(&Selector::Queue(q1.clone()))
                .await
                .expect("retry")
        ),
        expected
    );
    assert_eq!(counts(&t, &q1).await, ready(3));
    assert_eq!(
        counts(&t, &q2).await.failed,
        1,
        "another queue is untouched"
    );

    let all = moved(t.retry_failed(&Selector::All).await.expect("retry"));
    assert!(all.contains(&(in_q2, q2.clone())), "{all:?}");
    assert!(!all.iter().any(|(_, q)| *q == q1), "{all:?}");
    assert_eq!(counts(&t, &q2).await, ready(1));
    assert_eq!(
        claim(&t, &q2, &owner).await.map(|task| task.id),
        Some(in_q2)
    );
}

/// `purge` deletes one state of one queue.
pub async fn case_purge(t: Arc<dyn Transport>) {
    let (queue, other, owner) = (unique("purge"), unique("other"), unique("owner"));
    failed_task(&t, &queue, &owner).await;
    let running = submit(&t, &queue, json!({})).await;
    assert_eq!(
        claim(&t, &queue, &owner).await.map(|task| task.id),
        Some(running)
    );
    submit(&t, &queue, json!({})).await;
    let later = SystemTime::now() + Duration::from_secs(3600);
    submit_with(
        &t,
        &queue,
        json!({}),
        SubmitOptions {
            run_at: Some(later),
            ..SubmitOptions::default()
        },
    )
    .await;
    failed_task(&t, &other, &owner).await;
    submit(&t, &other, json!({})).await;

    assert_eq!(t.purge(&queue, PurgeWhich::Failed).await.expect("purge"), 1);
    assert_eq!(counts(&t, &queue).await.failed, 0);
    assert_eq!(
        t.purge(&queue, PurgeWhich::Pending).await.expect("purge"),
        2,
        "ready and delayed"
    );
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            running: 1,
            ..QueueCounts::default()
        }
    );
    assert_eq!(
        counts(&t, &other).await,
        QueueCounts {
            ready: 1,
            failed: 1,
            ..QueueCounts::default()
        }
    );
    assert_eq!(
        t.purge(&queue, PurgeWhich::Pending).await.expect("purge"),
        0
    );
}
