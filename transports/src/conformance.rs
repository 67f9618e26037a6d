//! The conformance suite: the delivery contract as executable cases, run against every
//! transport by [`conformance_suite!`](crate::conformance_suite).
//!
//! ```no_run
//! use std::sync::Arc;
//! use rex_transport::{Transport, memory::MemoryTransport};
//!
//! // Expands to `mod memory { #[tokio::test] async fn case_...() ... }`, one test per case.
//! rex_transport::conformance_suite!(memory, async { Arc::new(MemoryTransport::new()) as Arc<dyn Transport> });
//! ```
//!
//! The fixture expression is evaluated once per case. It yields an `Arc<dyn Transport>` or a
//! `(Arc<dyn Transport>, guard)` pair whose guard (a temporary directory, a container...) lives
//! until the case ends, or an `Option` of either: `None` skips the case with a message (how
//! server transports run without their server). The calling crate needs `tokio` (with `macros` and `rt`).
//!
//! Every case names its queues and owners with a random suffix, so several runs may share one
//! broker. Two things still see the whole broker: [`case_stats`] only checks the rows of its
//! own queues, and [`case_retry_failed`] ends with `retry_failed(All)`, which also moves other
//! concurrent runs' failed tasks — give concurrent runs separate databases or vhosts.
//!
//! Cases panic on failure, like any test. Sleeps in cases only let *data* age (a delayed
//! `run_at`, a short lease); nothing waits for another task to get somewhere.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::{
    Failure, Outcome, Payload, PurgeWhich, QueueCounts, Selector, Submit, SubmitOptions, Task,
    TaskId, TaskState, Transport, TransportError, normalize_payload,
};

/// What a conformance fixture yields: the transport under test, plus anything to keep alive;
/// `None` skips the case (a server transport whose `REX_TEST_*` variable is unset).
pub trait Fixture {
    fn transport(&self) -> Option<Arc<dyn Transport>>;
}

impl Fixture for Arc<dyn Transport> {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(Arc::clone(self))
    }
}

impl<G> Fixture for (Arc<dyn Transport>, G) {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(Arc::clone(&self.0))
    }
}

impl<F: Fixture> Fixture for Option<F> {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        self.as_ref().and_then(Fixture::transport)
    }
}

/// `conformance_suite!(module_name, fixture_future)`: a module with one `#[tokio::test]` per
/// case of [`conformance`](crate::conformance). See the module docs.
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $fixture:expr $(,)?) => {
        $crate::conformance_suite!(@cases $module, $fixture;
            case_original_sequence,
            case_payload_keys_sorted,
            case_null_payload,
            case_invalid_queue_names,
            case_claim_leases,
            case_complete_with_submits,
            case_complete_and_claim,
            case_stale_lease,
            case_fail_with_retry,
            case_fail_without_retry,
            case_retry_failed,
            case_purge,
            case_release_keeps_attempt,
            case_owned_by,
            case_expired,
            case_renew,
            case_idempotency_key,
            case_schedule_fires,
            case_prune_schedule_keys,
            case_delayed_submit,
            case_stats,
            case_wait_returns,
            case_concurrent_claimers,
        );
    };
    (@cases $module:ident, $fixture:expr; $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test]
                async fn $case() {
                    let fixture = $fixture.await;
                    match $crate::conformance::Fixture::transport(&fixture) {
                        Some(transport) => $crate::conformance::$case(transport).await,
                        None => eprintln!("{}::{}: skipped (no server configured)", stringify!($module), stringify!($case)),
                    }
                    drop(fixture);
                }
            )*
        }
    };
}

/// Long enough never to expire during a case.
const LEASE: Duration = Duration::from_secs(600);

/// `base` plus a random suffix: a valid queue (or owner) name no other run uses.
pub fn unique(base: &str) -> String {
    let suffix: String = std::iter::repeat_with(fastrand::lowercase)
        .take(12)
        .collect();
    format!("{base}_{suffix}")
}

fn payload(value: Value) -> Payload {
    normalize_payload(value).expect("test payloads are objects")
}

async fn submit(t: &Arc<dyn Transport>, queue: &str, value: Value) -> TaskId {
    submit_with(t, queue, value, SubmitOptions::default())
        .await
        .expect("no idempotency key")
}

async fn submit_with(
    t: &Arc<dyn Transport>,
    queue: &str,
    value: Value,
    opts: SubmitOptions,
) -> Option<TaskId> {
    t.submit(queue, payload(value), &opts)
        .await
        .expect("submit")
}

async fn claim(t: &Arc<dyn Transport>, queue: &str, owner: &str) -> Option<Task> {
    t.claim(queue, owner, LEASE).await.expect("claim")
}

async fn counts(t: &Arc<dyn Transport>, queue: &str) -> QueueCounts {
    t.counts(queue).await.expect("counts")
}

/// Submit, claim and fail a task for good; returns its id.
async fn failed_task(t: &Arc<dyn Transport>, queue: &str, owner: &str) -> TaskId {
    let id = submit(t, queue, json!({})).await;
    let task = claim(t, queue, owner).await.expect("claimable");
    assert_eq!(task.id, id);
    assert!(
        t.fail(&task.lease(), &Failure::error("Oops!"), None)
            .await
            .expect("fail")
    );
    id
}

fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|task| task.id).collect()
}

fn assert_invalid_queue<T: std::fmt::Debug>(result: crate::Result<T>) {
    match result {
        Err(TransportError::InvalidQueueName(name)) => assert_eq!(name, "BADNAME"),
        other => panic!("expected an invalid queue name error, got {other:?}"),
    }
}

fn ready(n: u64) -> QueueCounts {
    QueueCounts {
        ready: n,
        ..QueueCounts::default()
    }
}

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

/// Payload keys come back sorted at every depth.
pub async fn case_payload_keys_sorted(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("sorted"), unique("owner"));
    submit(
        &t,
        &queue,
        json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": 2}}),
    )
    .await;
    let task = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!(
        Value::Object(task.payload).to_string(),
        r#"{"a":{"c":2,"d":[1,{"y":1,"z":0}]},"b":1}"#
    );
}

/// A `null` payload is submitted as `{}`; non-objects are refused before reaching a transport.
pub async fn case_null_payload(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("null"), unique("owner"));
    submit(&t, &queue, Value::Null).await;
    let task = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!(task.payload, Payload::new());
    assert!(matches!(
        normalize_payload(json!([1])),
        Err(TransportError::InvalidPayload(_))
    ));
}

/// Every operation naming a queue validates it.
pub async fn case_invalid_queue_names(t: Arc<dyn Transport>) {
    let err = t
        .submit("BADNAME", Payload::new(), &SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#""BADNAME" is not a properly-formatted queue name"#
    );
    let err = t.claim("BADNAME", "owner", LEASE).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#""BADNAME" is not a properly-formatted queue name"#
    );
    assert_invalid_queue(t.counts("BADNAME").await);
    assert_invalid_queue(t.purge("BADNAME", PurgeWhich::Pending).await);
    assert_invalid_queue(t.failed(Some("BADNAME")).await);
    assert_invalid_queue(t.retry_failed(&Selector::Queue("BADNAME".into())).await);
    assert_invalid_queue(t.wait("BADNAME", Duration::from_millis(1)).await);
}

/// A claim leases the task: it is running, and the next claim gets the next task.
pub async fn case_claim_leases(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("lease"), unique("owner"));
    let first = submit(&t, &queue, json!({"n": 1})).await;
    let second = submit(&t, &queue, json!({"n": 2})).await;
    let before = SystemTime::now();
    let a = claim(&t, &queue, &owner).await.expect("first");
    assert_eq!(a.id, first);
    assert!(
        a.lease_until >= before + LEASE - Duration::from_secs(5),
        "lease_until is now + lease"
    );
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            ready: 1,
            running: 1,
            ..QueueCounts::default()
        }
    );
    let b = claim(&t, &queue, &owner).await.expect("second");
    assert_eq!(b.id, second, "a leased task is not claimed again");
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            running: 2,
            ..QueueCounts::default()
        }
    );
    assert!(claim(&t, &queue, &owner).await.is_none());
}

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

/// Settlements quoting an old lease are refused and change nothing.
pub async fn case_stale_lease(t: Arc<dyn Transport>) {
    let (queue, other, owner) = (unique("stale"), unique("other"), unique("owner"));
    let id = submit(&t, &queue, json!({})).await;
    let old = claim(&t, &queue, &owner).await.expect("claimable");
    assert!(
        t.release(&old.lease(), "shutting down")
            .await
            .expect("release")
    );
    let new = claim(&t, &queue, &owner)
        .await
        .expect("released tasks are claimable");
    assert_eq!(new.id, id);
    assert_ne!(
        new.lease_token, old.lease_token,
        "every claim has a new lease token"
    );

    let submits = [Submit {
        queue: other.clone(),
        payload: Payload::new(),
    }];
    assert!(!t.complete(&old.lease(), &submits).await.expect("complete"));
    assert!(
        !t.fail(&old.lease(), &Failure::crash("late"), None)
            .await
            .expect("fail")
    );
    assert!(
        !t.fail(
            &old.lease(),
            &Failure::error("late"),
            Some(SystemTime::now())
        )
        .await
        .expect("fail")
    );
    assert!(!t.release(&old.lease(), "late").await.expect("release"));
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            running: 1,
            ..QueueCounts::default()
        }
    );
    assert_eq!(
        counts(&t, &other).await,
        QueueCounts::default(),
        "a stale completion submits nothing"
    );
    assert_eq!(ids(&t.owned_by(&owner).await.expect("owned_by")), [id]);

    assert!(t.complete(&new.lease(), &[]).await.expect("complete"));
    assert!(
        !t.complete(&new.lease(), &[]).await.expect("complete"),
        "a lease settles once"
    );
    assert_eq!(counts(&t, &queue).await, QueueCounts::default());
}

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

/// `retry_failed` by ids, by queue and all; counters reset, history kept.
pub async fn case_retry_failed(t: Arc<dyn Transport>) {
    let (q1, q2, owner) = (unique("retry_one"), unique("retry_two"), unique("owner"));
    let mut in_q1 = Vec::new();
    for _ in 0..3 {
        in_q1.push(failed_task(&t, &q1, &owner).await);
    }
    let in_q2 = failed_task(&t, &q2, &owner).await;

    assert_eq!(
        t.retry_failed(&Selector::Ids(vec![in_q1[1]]))
            .await
            .expect("retry"),
        1
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
        0,
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

    assert_eq!(
        t.retry_failed(&Selector::Queue(q1.clone()))
            .await
            .expect("retry"),
        3
    );
    assert_eq!(counts(&t, &q1).await, ready(3));
    assert_eq!(
        counts(&t, &q2).await.failed,
        1,
        "another queue is untouched"
    );

    assert!(t.retry_failed(&Selector::All).await.expect("retry") >= 1);
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

/// `release` returns the task without using up an attempt, and records why.
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

/// `owned_by` lists exactly the running tasks of one owner.
pub async fn case_owned_by(t: Arc<dyn Transport>) {
    let (queue, alice, bob) = (unique("owned"), unique("alice"), unique("bob"));
    for _ in 0..3 {
        submit(&t, &queue, json!({})).await;
    }
    let a1 = claim(&t, &queue, &alice).await.expect("claimable");
    let b1 = claim(&t, &queue, &bob).await.expect("claimable");
    let a2 = claim(&t, &queue, &alice).await.expect("claimable");

    let mine = t.owned_by(&alice).await.expect("owned_by");
    assert_eq!(ids(&mine), [a1.id, a2.id]);
    assert!(
        mine.iter()
            .all(|task| task.owner == alice && task.queue == queue)
    );
    assert_eq!(mine[0], a1, "the same task as claimed");
    assert_eq!(ids(&t.owned_by(&bob).await.expect("owned_by")), [b1.id]);
    assert!(
        t.owned_by(&unique("nobody"))
            .await
            .expect("owned_by")
            .is_empty()
    );

    assert!(t.complete(&a1.lease(), &[]).await.expect("complete"));
    assert!(t.release(&b1.lease(), "bye").await.expect("release"));
    assert_eq!(ids(&t.owned_by(&alice).await.expect("owned_by")), [a2.id]);
    assert!(
        t.owned_by(&bob).await.expect("owned_by").is_empty(),
        "only running tasks"
    );
}

/// `expired` lists running tasks whose lease has passed.
pub async fn case_expired(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("expired"), unique("owner"));
    submit(&t, &queue, json!({})).await;
    submit(&t, &queue, json!({})).await;
    let short = t
        .claim(&queue, &owner, Duration::from_millis(50))
        .await
        .expect("claim")
        .expect("claimable");
    let long = claim(&t, &queue, &owner).await.expect("claimable");
    let mine = |tasks: Vec<Task>| -> Vec<TaskId> {
        tasks
            .into_iter()
            .filter(|task| task.queue == queue)
            .map(|task| task.id)
            .collect()
    };
    let expired: Vec<TaskId> = mine(
        t.expired(SystemTime::now() - Duration::from_secs(60))
            .await
            .expect("expired"),
    );
    assert!(expired.is_empty());

    tokio::time::sleep(Duration::from_millis(100)).await;
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert_eq!(expired, [short.id]);
    let expired: Vec<TaskId> = mine(
        t.expired(SystemTime::now() + 2 * LEASE)
            .await
            .expect("expired"),
    );
    assert_eq!(expired, [short.id, long.id]);

    assert!(
        t.fail(&short.lease(), &Failure::crash("lease expired"), None)
            .await
            .expect("fail")
    );
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert!(expired.is_empty(), "only running tasks expire");
}

/// `renew` extends the leases of the named owners only.
pub async fn case_renew(t: Arc<dyn Transport>) {
    let (queue, alive, dead) = (unique("renew"), unique("alive"), unique("dead"));
    submit(&t, &queue, json!({})).await;
    submit(&t, &queue, json!({})).await;
    let short = Duration::from_millis(50);
    let kept = t
        .claim(&queue, &alive, short)
        .await
        .expect("claim")
        .expect("claimable");
    let lost = t
        .claim(&queue, &dead, short)
        .await
        .expect("claim")
        .expect("claimable");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mine = |tasks: Vec<Task>| -> Vec<TaskId> {
        tasks
            .into_iter()
            .filter(|task| task.queue == queue)
            .map(|task| task.id)
            .collect()
    };
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert_eq!(expired, [kept.id, lost.id]);

    assert_eq!(
        t.renew(&[alive.clone(), unique("nobody")], LEASE)
            .await
            .expect("renew"),
        1
    );
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert_eq!(expired, [lost.id]);
    let renewed = t.owned_by(&alive).await.expect("owned_by");
    assert!(renewed[0].lease_until > SystemTime::now() + LEASE - Duration::from_secs(5));
    assert_eq!(
        renewed[0].lease_token, kept.lease_token,
        "renewing keeps the lease token"
    );
    assert!(t.complete(&kept.lease(), &[]).await.expect("complete"));
    assert_eq!(t.renew(&[], LEASE).await.expect("renew"), 0);
}

/// Completing and claiming in one call: the attempt is done (its follow-ups enqueued) and the
/// next task is leased to the same owner; a stale lease completes nothing but still claims.
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
    let (done, next) = t
        .complete_and_claim(&task.lease(), &[follow_up], &queue, &owner, LEASE)
        .await
        .expect("complete_and_claim");
    assert!(done);
    let next = next.expect("the second task is claimed at once");
    assert_eq!(
        (next.id, next.attempt, next.owner.as_str()),
        (second, 1, owner.as_str())
    );
    assert_eq!(counts(&t, &other).await, ready(1));
    // The old lease is stale now: nothing completes, the (empty) queue yields nothing.
    let (done, none) = t
        .complete_and_claim(&task.lease(), &[], &queue, &owner, LEASE)
        .await
        .expect("stale");
    assert!(!done);
    assert!(none.is_none());
    let (done, none) = t
        .complete_and_claim(&next.lease(), &[], &queue, &owner, LEASE)
        .await
        .expect("last");
    assert!(done && none.is_none());
    assert!(counts(&t, &queue).await.is_drained());
}

/// Each schedule fire is enqueued once, and the latest recorded fire is found per schedule.
pub async fn case_schedule_fires(t: Arc<dyn Transport>) {
    use crate::schedule_key;
    let (queue, a, b) = (unique("sched"), unique("a"), unique("b"));
    assert_eq!(t.last_fire(&a).await.expect("last_fire"), None);
    let at = |ms: i64| crate::task::from_epoch_ms(ms);
    let keyed = |key: String| SubmitOptions {
        idempotency_key: Some(key),
        ..SubmitOptions::default()
    };
    for ms in [2_000, 1_000, 3_000] {
        assert!(
            submit_with(&t, &queue, json!({}), keyed(schedule_key(&a, at(ms))))
                .await
                .is_some()
        );
    }
    assert!(
        submit_with(&t, &queue, json!({}), keyed(schedule_key(&b, at(9_000))))
            .await
            .is_some()
    );
    // A second scheduler trying the same fire enqueues nothing.
    assert_eq!(
        submit_with(&t, &queue, json!({}), keyed(schedule_key(&a, at(3_000)))).await,
        None
    );
    assert_eq!(t.last_fire(&a).await.expect("last_fire"), Some(at(3_000)));
    assert_eq!(t.last_fire(&b).await.expect("last_fire"), Some(at(9_000)));
    assert_eq!(counts(&t, &queue).await, ready(4));
}

/// Old schedule keys are forgotten, but never the latest of a schedule (`last_fire` stays).
pub async fn case_prune_schedule_keys(t: Arc<dyn Transport>) {
    use crate::schedule_key;
    let (queue, a, b) = (unique("prune"), unique("a"), unique("b"));
    let at = |ms: i64| crate::task::from_epoch_ms(ms);
    let keyed = |key: String| SubmitOptions {
        idempotency_key: Some(key),
        ..SubmitOptions::default()
    };
    for (schedule, ms) in [(&a, 1_000), (&a, 2_000), (&a, 3_000), (&b, 1_000)] {
        assert!(
            submit_with(&t, &queue, json!({}), keyed(schedule_key(schedule, at(ms))))
                .await
                .is_some()
        );
    }
    let pruned = t
        .prune_schedule_keys(at(10_000))
        .await
        .expect("prune_schedule_keys");
    assert_eq!(t.last_fire(&a).await.expect("last_fire"), Some(at(3_000)));
    assert_eq!(t.last_fire(&b).await.expect("last_fire"), Some(at(1_000)));
    for (schedule, ms) in [(&a, 3_000), (&b, 1_000)] {
        assert_eq!(
            submit_with(&t, &queue, json!({}), keyed(schedule_key(schedule, at(ms)))).await,
            None,
            "the latest key of a schedule is kept"
        );
    }
    let again = submit_with(&t, &queue, json!({}), keyed(schedule_key(&a, at(1_000)))).await;
    if t.leases_held_by_broker() {
        // RabbitMQ keeps a key in a queue of its own that expires by itself.
        assert_eq!((pruned, again), (0, None));
    } else {
        // Other cases may share the store: at least this case's two old keys went.
        assert!(pruned >= 2, "pruned {pruned}");
        assert!(again.is_some(), "an old key is forgotten");
    }
}

/// At most one task is ever enqueued per idempotency key.
pub async fn case_idempotency_key(t: Arc<dyn Transport>) {
    let (queue, owner, key) = (unique("idem"), unique("owner"), unique("key"));
    let keyed = |key: &str| SubmitOptions {
        idempotency_key: Some(key.to_string()),
        ..SubmitOptions::default()
    };
    let id = submit_with(&t, &queue, json!({"n": 1}), keyed(&key))
        .await
        .expect("first use of the key");
    assert_eq!(
        submit_with(&t, &queue, json!({"n": 2}), keyed(&key)).await,
        None
    );
    assert_eq!(counts(&t, &queue).await, ready(1));

    let task = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!(
        (task.id, Value::Object(task.payload.clone())),
        (id, json!({"n": 1}))
    );
    assert!(t.complete(&task.lease(), &[]).await.expect("complete"));
    assert_eq!(
        submit_with(&t, &queue, json!({}), keyed(&key)).await,
        None,
        "not even after completion"
    );
    assert!(
        submit_with(&t, &queue, json!({}), keyed(&unique("key")))
            .await
            .is_some()
    );
    assert_eq!(counts(&t, &queue).await, ready(1));
}

/// A submit with `run_at` is delayed until then, and does not block ready tasks behind it.
pub async fn case_delayed_submit(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("delayed"), unique("owner"));
    // Long enough that a slow first submit (which may create the queue's objects) does not
    // bring a broker's first delay hop (half the remaining delay or more) to its end before
    // the counts below.
    let run_at = SystemTime::now() + Duration::from_millis(1500);
    let delayed = submit_with(
        &t,
        &queue,
        json!({}),
        SubmitOptions {
            run_at: Some(run_at),
            ..SubmitOptions::default()
        },
    )
    .await;
    let c = counts(&t, &queue).await;
    assert_eq!((c.ready, c.delayed), (0, 1));
    // No `next_run_at` on a broker-held transport (RabbitMQ): see case_fail_with_retry.
    assert!(c.next_run_at.is_some() || t.leases_held_by_broker());
    assert!(
        claim(&t, &queue, &owner).await.is_none(),
        "not ready before run_at"
    );

    let now = submit(&t, &queue, json!({})).await;
    assert_eq!(
        claim(&t, &queue, &owner).await.map(|task| task.id),
        Some(now)
    );
    let until_due = run_at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(until_due + Duration::from_millis(100)).await;
    assert_eq!(claim(&t, &queue, &owner).await.map(|task| task.id), delayed);
}

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

/// `wait` returns by its timeout (sooner is allowed), and validates the queue.
pub async fn case_wait_returns(t: Arc<dyn Transport>) {
    let queue = unique("wait");
    let start = std::time::Instant::now();
    t.wait(&queue, Duration::from_millis(100))
        .await
        .expect("wait");
    assert!(start.elapsed() < Duration::from_secs(5));
    submit(&t, &queue, json!({})).await;
    let start = std::time::Instant::now();
    t.wait(&queue, Duration::from_millis(100))
        .await
        .expect("wait");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// `claimers` tasks, spread over `instances` (as the current runtime's tasks), each claiming
/// and completing until `queue` is empty. Returns every id claimed, repeats included.
pub async fn claim_concurrently(
    instances: &[Arc<dyn Transport>],
    queue: &str,
    claimers: usize,
) -> Vec<TaskId> {
    let claimers: Vec<_> = (0..claimers)
        .map(|i| {
            let t = Arc::clone(&instances[i % instances.len()]);
            let queue = queue.to_string();
            tokio::spawn(async move {
                let owner = unique(&format!("claimer{i}"));
                let mut got = Vec::new();
                while let Some(task) = claim(&t, &queue, &owner).await {
                    got.push(task.id);
                    tokio::task::yield_now().await; // let the others claim meanwhile
                    assert!(
                        t.complete(&task.lease(), &[]).await.expect("complete"),
                        "the lease is ours"
                    );
                }
                got
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.expect("claimer panicked"));
    }
    claimed
}

/// Every submitted task was claimed, none twice.
pub fn assert_claimed_once(claimed: Vec<TaskId>, submitted: &BTreeSet<TaskId>) {
    assert_eq!(claimed.len(), submitted.len(), "no task claimed twice");
    assert_eq!(
        &claimed.into_iter().collect::<BTreeSet<_>>(),
        submitted,
        "every task claimed"
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
