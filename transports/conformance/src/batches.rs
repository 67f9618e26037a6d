//! Batches: `claim_batch`, `settle` and `settle_and_claim` with several tasks, and
//! `submit_batch`. A batch keeps the claim order, fences each settlement by its own token (a
//! stale one rejects only itself), and validates every submit before applying anything.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{
    Failure, Lease, Payload, QueueCounts, Settlement, Submit, Task, TaskId, Transport,
};
use serde_json::{Value, json};

use crate::{LEASE, assert_invalid_queue, claim, counts, ids, payload, ready, submit, unique};

fn submits(queue: &str, values: &[Value]) -> Vec<Submit> {
    values
        .iter()
        .map(|v| Submit {
            queue: queue.to_string(),
            payload: payload(v.clone()),
        })
        .collect()
}

/// A lease of `task` that is no longer current: the task was released and claimed again.
async fn stale_lease(t: &Arc<dyn Transport>, task: &Task, owner: &str) -> (Lease, Task) {
    assert!(t.release(&task.lease(), "test").await.expect("release"));
    let again = claim(t, &task.queue, owner)
        .await
        .expect("released tasks are claimable");
    assert_eq!(again.id, task.id);
    (task.lease(), again)
}

/// `claim_batch` leases up to its window of *due* tasks in claim order; a partial batch when
/// fewer are ready; nothing when none is.
pub async fn case_claim_batch_order(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("batch_claim"), unique("owner"));
    let mut due = Vec::new();
    for n in 0..5 {
        due.push(submit(&t, &queue, json!({ "n": n })).await);
    }
    let later = SystemTime::now() + Duration::from_secs(3600);
    t.submit_batch(&submits(&queue, &[json!({"later": true})]), Some(later))
        .await
        .expect("delayed submit");

    let first = t
        .claim_batch(&queue, &owner, LEASE, 3)
        .await
        .expect("claim_batch");
    assert_eq!(ids(&first), due[..3], "a full window, in submission order");
    for task in &first {
        assert_eq!((task.attempt, task.owner.as_str()), (1, owner.as_str()));
    }
    let rest = t
        .claim_batch(&queue, &owner, LEASE, 10)
        .await
        .expect("claim_batch");
    assert_eq!(
        ids(&rest),
        due[3..],
        "a partial batch: the delayed task is not due"
    );
    let tokens: std::collections::BTreeSet<(TaskId, u64)> = first
        .iter()
        .chain(&rest)
        .map(|task| (task.id, task.lease_token))
        .collect();
    assert_eq!(tokens.len(), 5, "every task has its own lease");
    assert!(
        t.claim_batch(&queue, &owner, LEASE, 10)
            .await
            .expect("claim_batch")
            .is_empty()
    );
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            running: 5,
            delayed: 1,
            next_run_at: counts(&t, &queue).await.next_run_at,
            ..QueueCounts::default()
        }
    );
}

/// One batch of every kind of settlement, one of them stale: each is applied or refused by
/// its own token, and a stale completion's submits are not enqueued.
pub async fn case_settle_batch_mixed_tokens(t: Arc<dyn Transport>) {
    let (queue, follow, owner) = (unique("batch_settle"), unique("follow"), unique("owner"));
    for n in 0..4 {
        submit(&t, &queue, json!({ "n": n })).await;
    }
    let tasks = t
        .claim_batch(&queue, &owner, LEASE, 4)
        .await
        .expect("claim_batch");
    assert_eq!(tasks.len(), 4);
    let (stale, current) = stale_lease(&t, &tasks[1], &owner).await;

    let batch = vec![
        Settlement::Complete {
            lease: tasks[0].lease(),
            submits: submits(&follow, &[json!({"after": 0})]),
            result: None,
        },
        Settlement::Complete {
            lease: stale,
            submits: submits(&follow, &[json!({"after": 1})]),
            result: None,
        },
        Settlement::Fail {
            lease: tasks[2].lease(),
            failure: Failure::error("Oops!"),
            retry_at: None,
        },
        Settlement::Release {
            lease: tasks[3].lease(),
            reason: "never started".into(),
        },
    ];
    let applied = t.settle(&batch).await.expect("settle");
    assert_eq!(applied, [true, false, true, true]);

    assert_eq!(
        counts(&t, &follow).await,
        ready(1),
        "only the current completion's submit"
    );
    let follow_up = claim(&t, &follow, &owner).await.expect("submitted");
    assert_eq!(Value::Object(follow_up.payload), json!({"after": 0}));
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            ready: 1,
            running: 1,
            failed: 1,
            ..QueueCounts::default()
        },
        "the stale task still runs under its new lease, the released one is ready"
    );
    let released = claim(&t, &queue, &owner).await.expect("released is ready");
    assert_eq!(
        (released.id, released.attempt),
        (tasks[3].id, 1),
        "a release uses no attempt"
    );
    assert!(t.complete(&current.lease(), &[]).await.expect("complete"));
}

/// An invalid submit anywhere in a batch refuses the whole batch, with nothing applied.
pub async fn case_settle_batch_validates_submits(t: Arc<dyn Transport>) {
    let (queue, follow, owner) = (unique("batch_valid"), unique("follow"), unique("owner"));
    for n in 0..2 {
        submit(&t, &queue, json!({ "n": n })).await;
    }
    let tasks = t
        .claim_batch(&queue, &owner, LEASE, 2)
        .await
        .expect("claim_batch");
    let batch = vec![
        Settlement::Complete {
            lease: tasks[0].lease(),
            submits: submits(&follow, &[json!({})]),
            result: None,
        },
        Settlement::Complete {
            lease: tasks[1].lease(),
            submits: vec![Submit {
                queue: "BADNAME".into(),
                payload: Payload::new(),
            }],
            result: None,
        },
    ];
    assert_invalid_queue(t.settle(&batch).await);
    assert_invalid_queue(t.settle_and_claim(&batch, &queue, &owner, LEASE, 4).await);
    assert_eq!(counts(&t, &queue).await.running, 2, "nothing was settled");
    assert_eq!(counts(&t, &follow).await, QueueCounts::default());
    let applied = t.settle(&batch[..1]).await.expect("settle");
    assert_eq!(applied, [true]);
}

/// A consumer's steady state with a window: settle a batch and claim the next in one call; the
/// claim is partial when fewer tasks are ready, and a window of 0 only settles.
pub async fn case_settle_and_claim_batch(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("batch_sac"), unique("owner"));
    let mut all = Vec::new();
    for n in 0..5 {
        all.push(submit(&t, &queue, json!({ "n": n })).await);
    }
    let first = t
        .claim_batch(&queue, &owner, LEASE, 2)
        .await
        .expect("claim_batch");
    let done: Vec<Settlement> = first
        .iter()
        .map(|task| Settlement::Complete {
            lease: task.lease(),
            submits: vec![],
            result: None,
        })
        .collect();
    let (applied, next) = t
        .settle_and_claim(&done, &queue, &owner, LEASE, 8)
        .await
        .expect("settle_and_claim");
    assert_eq!(applied, [true, true]);
    assert_eq!(ids(&next), all[2..], "the rest, in order: a partial window");
    let (applied, none) = t
        .settle_and_claim(&done, &queue, &owner, LEASE, 8)
        .await
        .expect("settle again");
    assert_eq!(
        applied,
        [false, false],
        "settling twice is refused, not an error"
    );
    assert!(none.is_empty());
    let done: Vec<Settlement> = next
        .iter()
        .map(|task| Settlement::Complete {
            lease: task.lease(),
            submits: vec![],
            result: None,
        })
        .collect();
    let (applied, none) = t
        .settle_and_claim(&done, &queue, &owner, LEASE, 0)
        .await
        .expect("settle only");
    assert_eq!(applied, [true, true, true]);
    assert!(none.is_empty());
    assert!(counts(&t, &queue).await.is_drained());
}

/// `submit_batch` enqueues every task, ids in the order given (which is the claim order),
/// across queues, and refuses a batch with an invalid queue name before enqueueing any.
pub async fn case_submit_batch(t: Arc<dyn Transport>) {
    let (queue, other, owner) = (unique("batch_submit"), unique("other"), unique("owner"));
    let bad = vec![
        Submit {
            queue: queue.clone(),
            payload: Payload::new(),
        },
        Submit {
            queue: "BADNAME".into(),
            payload: Payload::new(),
        },
    ];
    assert_invalid_queue(t.submit_batch(&bad, None).await);
    assert_eq!(counts(&t, &queue).await, QueueCounts::default());

    let mut batch = submits(
        &queue,
        &(0..20).map(|n| json!({ "n": n })).collect::<Vec<_>>(),
    );
    batch.insert(5, submits(&other, &[json!({"other": true})]).remove(0));
    let submitted = t.submit_batch(&batch, None).await.expect("submit_batch");
    assert_eq!(submitted.len(), 21, "one id per task");
    assert_eq!(counts(&t, &queue).await, ready(20));
    assert_eq!(counts(&t, &other).await, ready(1));
    let claimed = t
        .claim_batch(&queue, &owner, LEASE, 32)
        .await
        .expect("claim_batch");
    let expected: Vec<TaskId> = submitted
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(ids(&claimed), expected, "claimed in the order submitted");
    for (n, task) in claimed.iter().enumerate() {
        assert_eq!(Value::Object(task.payload.clone()), json!({ "n": n }));
    }
}
