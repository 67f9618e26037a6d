//! Lifecycle events: what the calls made through [`rex_transport::events::tap`] publish
//! reaches a follower of the same backend, in order, one event per applied change (a stale
//! settlement is none).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::events::tap;
use rex_transport::{
    EventFeed, EventKind, Failure, Settlement, Submit, TaskEvent, TaskId, Transport,
};
use serde_json::json;

use crate::{LEASE, payload, submit, unique};

/// The next `n` events of `queue` (others' events are skipped: the broker may be shared).
async fn next_events(feed: &mut EventFeed, queue: &str, n: usize) -> Vec<TaskEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        // A guard against a lost event, not a synchronisation: events normally arrive at once.
        let batch = tokio::time::timeout(Duration::from_secs(20), feed.recv())
            .await
            .unwrap_or_else(|_| panic!("no event after {got:?}"))
            .expect("the feed stays open")
            .expect("the subscription works");
        got.extend(batch.into_iter().filter(|e| e.queue == queue));
    }
    got
}

fn kinds(events: &[TaskEvent]) -> Vec<(EventKind, Option<TaskId>)> {
    events.iter().map(|e| (e.event, e.task)).collect()
}

/// Submits, claims, every kind of settlement and an operator's retry, each seen by a follower
/// as it happens.
pub async fn case_events_followed(raw: Arc<dyn Transport>) {
    let mut feed = raw.follow_events().await.expect("follow");
    assert!(raw.followed().await.expect("followed"), "once following");
    let t = tap(raw);
    let queue = unique("events");
    let owner = unique("owner");

    let first = submit(&t, &queue, json!({"n": 1})).await;
    let second = submit(&t, &queue, json!({"n": 2})).await;
    let got = next_events(&mut feed, &queue, 2).await;
    use EventKind::*;
    assert_eq!(
        kinds(&got),
        [(Submitted, Some(first)), (Submitted, Some(second))]
    );

    let claimed = t
        .claim_batch(&queue, &owner, LEASE, 2)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let got = next_events(&mut feed, &queue, 2).await;
    assert_eq!(
        kinds(&got),
        [(Started, Some(first)), (Started, Some(second))]
    );
    assert_eq!(got[0].attempt, Some(1));
    assert_eq!(got[0].owner.as_deref(), Some(owner.as_str()));

    // One completes with a follow-up, one fails with a retry; a stale repeat is no event.
    let retry_at = SystemTime::now() + Duration::from_secs(3600);
    let batch = [
        Settlement::Complete {
            lease: claimed[0].lease(),
            submits: vec![Submit {
                queue: queue.clone(),
                payload: payload(json!({"n": 3})),
            }],
            result: None,
        },
        Settlement::Fail {
            lease: claimed[1].lease(),
            failure: Failure::error("Oops!"),
            retry_at: Some(retry_at),
        },
    ];
    assert_eq!(t.settle(&batch).await.expect("settle"), [true, true]);
    assert_eq!(t.settle(&batch[..1]).await.expect("stale"), [false]);
    let got = next_events(&mut feed, &queue, 3).await;
    assert_eq!(
        kinds(&got),
        [
            (Succeeded, Some(first)),
            (Submitted, None),
            (Retried, Some(second))
        ]
    );
    assert_eq!(got[1].parent, Some(first));
    assert_eq!(got[2].reason.as_deref(), Some("Oops!"));
    assert_eq!(
        got[2].retry_at,
        Some(rex_transport::task::to_epoch_ms(retry_at))
    );
    assert_eq!(got[2].attempt, Some(1));

    // The follow-up's worker dies; another task is claimed and given back unstarted.
    let third = t
        .claim(&queue, &owner, LEASE)
        .await
        .expect("claim")
        .expect("the follow-up");
    let crash = Failure::crash("killed by SIGKILL");
    assert!(t.fail(&third.lease(), &crash, None).await.expect("fail"));
    let fourth = submit(&t, &queue, json!({"n": 4})).await;
    let held = t
        .claim(&queue, &owner, LEASE)
        .await
        .expect("claim")
        .expect("the fourth");
    assert!(
        t.release(&held.lease(), "not started")
            .await
            .expect("release")
    );
    let got = next_events(&mut feed, &queue, 5).await;
    assert_eq!(
        kinds(&got),
        [
            (Started, Some(third.id)),
            (Crashed, Some(third.id)),
            (Submitted, Some(fourth)),
            (Started, Some(fourth)),
            (Released, Some(fourth)),
        ]
    );
    assert_eq!(got[1].reason.as_deref(), Some("killed by SIGKILL"));

    // An operator cancels the retried task, which this wrapper knows no more (RabbitMQ
    // cannot cancel).
    if matches!(t.cancel_pending(second, "not wanted").await, Ok(true)) {
        let got = next_events(&mut feed, &queue, 1).await;
        assert_eq!(kinds(&got), [(Cancelled, Some(second))]);
        assert_eq!(got[0].reason.as_deref(), Some("not wanted"));
    }

    // The fourth fails for good, and an operator retries it.
    let fourth = t
        .claim(&queue, &owner, LEASE)
        .await
        .expect("claim")
        .expect("the fourth again");
    assert!(
        t.fail(&fourth.lease(), &Failure::error("no luck"), None)
            .await
            .expect("fail")
    );
    let retried = t
        .retry_failed(&rex_transport::Selector::Ids(vec![fourth.id]))
        .await
        .expect("retry");
    assert_eq!(retried.len(), 1);
    let got = next_events(&mut feed, &queue, 3).await;
    assert_eq!(
        kinds(&got),
        [
            (Started, Some(fourth.id)),
            (Failed, Some(fourth.id)),
            (Retried, Some(fourth.id))
        ]
    );
    assert_eq!(
        got[2].reason.as_deref(),
        Some(rex_transport::console::RETRIED)
    );
    assert!(got[2].retry_at.is_some());
}
