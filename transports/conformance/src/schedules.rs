//! Schedule fires: one task per fire through its idempotency key, `last_fire`, and pruning
//! old keys while keeping the latest of each schedule.

use std::sync::Arc;

use rex_transport::{SubmitOptions, Transport, TransportError};
use serde_json::json;

use crate::{counts, ready, submit_with, unique};

/// Each schedule fire is enqueued once, and the latest recorded fire is found per schedule.
pub async fn case_schedule_fires(t: Arc<dyn Transport>) {
    use rex_transport::schedule_key;
    let (queue, a, b) = (unique("sched"), unique("a"), unique("b"));
    assert_eq!(t.last_fire(&a).await.expect("last_fire"), None);
    let at = |ms: i64| rex_transport::task::from_epoch_ms(ms);
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

/// Old schedule keys are forgotten, but never the latest of a schedule (`last_fire` stays);
/// the keys of runs asked for by operators ("run now") go once older than the cut-off.
pub async fn case_prune_schedule_keys(t: Arc<dyn Transport>) {
    use rex_transport::schedule_key;
    let (queue, a, b) = (unique("prune"), unique("a"), unique("b"));
    let at = |ms: i64| rex_transport::task::from_epoch_ms(ms);
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
    let manual = rex_transport::manual_run_key(&a, "click-1");
    assert!(
        submit_with(&t, &queue, json!({}), keyed(manual.clone()))
            .await
            .is_some()
    );
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
    // The run-now key was used after the cut-off: kept, until a later cut-off.
    assert_eq!(
        submit_with(&t, &queue, json!({}), keyed(manual.clone())).await,
        None,
        "a recent run-now key is kept"
    );
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    t.prune_schedule_keys(later)
        .await
        .expect("prune_schedule_keys");
    let again = submit_with(&t, &queue, json!({}), keyed(manual)).await;
    assert_eq!(
        again.is_some(),
        !t.leases_held_by_broker(),
        "an old run-now key is forgotten (RabbitMQ: when its queue expires)"
    );
}

/// A schedule's pause flag: set and cleared once each (the second of each changes nothing),
/// listed while set, seen by `schedule_paused` however many processes read the listing; a
/// malformed id is refused.
pub async fn case_schedule_pause(t: Arc<dyn Transport>) {
    let (id, other) = (unique("sched"), unique("sched"));
    assert!(t.set_schedule_paused(&id, true).await.expect("pause"));
    assert!(!t.set_schedule_paused(&id, true).await.expect("pause again"));
    assert!(t.set_schedule_paused(&other, true).await.expect("pause"));
    let paused = t.paused_schedules().await.expect("paused");
    assert!(
        paused.contains(&id) && paused.contains(&other),
        "{paused:?}"
    );
    let mut sorted = paused.clone();
    sorted.sort();
    assert_eq!(paused, sorted);
    // What a scheduler asks before each fire, answered while other processes read the
    // listing at the same instant (on RabbitMQ a reading takes the messages for a moment).
    let never = unique("sched");
    let mut asked = Vec::new();
    for _ in 0..8 {
        asked.push(tokio::spawn({
            let t = Arc::clone(&t);
            async move { t.paused_schedules().await.map(|_| None) }
        }));
        for which in [&id, &never] {
            asked.push(tokio::spawn({
                let (t, which) = (Arc::clone(&t), which.clone());
                async move { t.schedule_paused(&which).await.map(|p| Some((which, p))) }
            }));
        }
    }
    for answer in asked {
        if let Some((which, paused)) = answer.await.expect("join").expect("asked") {
            assert_eq!(paused, which == id, "schedule_paused({which})");
        }
    }
    assert!(t.set_schedule_paused(&id, false).await.expect("resume"));
    assert!(!t.schedule_paused(&id).await.expect("asked"));
    assert!(
        !t.set_schedule_paused(&id, false)
            .await
            .expect("resume again")
    );
    let paused = t.paused_schedules().await.expect("paused");
    assert!(
        !paused.contains(&id) && paused.contains(&other),
        "{paused:?}"
    );
    assert!(t.set_schedule_paused(&other, false).await.expect("resume"));
    assert!(matches!(
        t.set_schedule_paused("no such:id", true).await,
        Err(TransportError::InvalidScheduleId(_))
    ));
}
