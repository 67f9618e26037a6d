//! Submitting: payloads (sorted keys, `null`), queue-name validation on every operation,
//! idempotency keys, and delayed submits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{
    Payload, PurgeWhich, Selector, SubmitOptions, Transport, TransportError, normalize_payload,
};
use serde_json::{Value, json};

use crate::{LEASE, assert_invalid_queue, claim, counts, ready, submit, submit_with, unique};

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

/// A payload comes back exactly as submitted: numbers keep every digit (beyond 64 bits,
/// beyond f64), text keeps every character. `null` and non-objects are refused before
/// reaching a transport.
pub async fn case_payload_fidelity(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("fidelity"), unique("owner"));
    let text = r#"{"big":123456789012345678901234567890,"neg":-98765432109876543210,"price":1.10,"tiny":1e-400,"huge":1.5e+400,"text":"é\u0001😀\"\\","list":[0,-0.0,[],{}]}"#;
    let value: Value = serde_json::from_str(text).expect("test payload parses");
    submit(&t, &queue, value.clone()).await;
    let task = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!(
        Value::Object(task.payload).to_string(),
        value.to_string(),
        "the payload changed on its way through the transport"
    );
    for refused in [Value::Null, json!([1]), json!("text"), json!(1)] {
        assert!(matches!(
            normalize_payload(refused),
            Err(TransportError::InvalidPayload(_))
        ));
    }
}

/// Every operation naming a queue validates it.
pub async fn case_invalid_queue_names(t: Arc<dyn Transport>) {
    let err = t
        .submit("BADNAME", Payload::new(), &SubmitOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#""BADNAME" is not a properly-formatted queue name: "#),
        "{err}"
    );
    let err = t.claim("BADNAME", "owner", LEASE).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#""BADNAME" is not a properly-formatted queue name: "#),
        "{err}"
    );
    assert_invalid_queue(t.counts("BADNAME").await);
    assert_invalid_queue(t.purge("BADNAME", PurgeWhich::Pending).await);
    assert_invalid_queue(t.failed(Some("BADNAME")).await);
    assert_invalid_queue(t.retry_failed(&Selector::Queue("BADNAME".into())).await);
    assert_invalid_queue(t.wait("BADNAME", Duration::from_millis(1)).await);
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
