//! Lifecycle events over `NOTIFY`: what one instance publishes reaches a follower on another,
//! complete and in order however many messages it takes; following is seen from every
//! instance, and ends with the feed; a lost connection ends the feed with one error.

use rex_transport::{EventFeed, EventKind, TaskEvent};

use super::*;

/// How long a case waits for what it expects: a guard against hanging, never reached when
/// working.
const WITHIN: Duration = Duration::from_secs(10);

/// Read batches until `n` events have arrived; also returns how many batches they came in.
async fn receive(feed: &mut EventFeed, n: usize) -> (Vec<TaskEvent>, usize) {
    let (mut events, mut batches) = (Vec::new(), 0);
    while events.len() < n {
        let batch = tokio::time::timeout(WITHIN, feed.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived", events.len()))
            .expect("the feed is open")
            .expect("no error");
        events.extend(batch);
        batches += 1;
    }
    (events, batches)
}

/// Until `followed` says `expected` (it follows sessions starting and ending on the server).
async fn until_followed(t: &Arc<dyn Transport>, expected: bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while t.followed().await.expect("followed") != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "followed() never became {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The channel `events.rs` notifies on (and the follower's `application_name`).
fn channel(schema: &Schema) -> String {
    format!("rex.events.{}", schema.name)
}

#[tokio::test]
async fn published_events_reach_a_follower_on_another_instance() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let follower = rex_transport::open(&schema.uri()).expect("open");
    let publisher = rex_transport::open(&schema.uri()).expect("open");
    assert!(!publisher.followed().await.expect("followed"));

    let mut feed = follower.follow_events().await.expect("follow");
    assert!(follower.followed().await.expect("followed"));
    assert!(publisher.followed().await.expect("followed"));

    // Another program's message on the channel is not an event: skipped.
    let admin = admin(&server).await;
    admin
        .execute("SELECT pg_notify($1, 'hello')", &[&channel(&schema)])
        .await
        .expect("notify");
    let queue = format!("{}_queue", schema.name);
    let events = vec![
        TaskEvent::new(EventKind::Submitted, &queue, Some(1), 0),
        TaskEvent::new(EventKind::Submitted, &queue, Some(2), 0),
    ];
    publisher.publish_events(&events).await.expect("publish");
    let (received, _) = receive(&mut feed, events.len()).await;
    assert_eq!(received, events);

    drop(feed);
    until_followed(&publisher, false).await;
}

/// More than one `NOTIFY` payload (8000 bytes) of events: split into messages that arrive
/// complete and in order.
#[tokio::test]
async fn many_events_arrive_complete_and_in_order() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = rex_transport::open(&schema.uri()).expect("open");
    let mut feed = t.follow_events().await.expect("follow");
    let events: Vec<TaskEvent> = (0..300)
        .map(|n| {
            let mut event = TaskEvent::new(EventKind::Failed, "long_reasons", Some(n), n);
            event.attempt = Some(1);
            event.reason = Some(format!("{n}: {}", "x".repeat(400)));
            event
        })
        .collect();
    t.publish_events(&events).await.expect("publish");
    let (received, batches) = receive(&mut feed, events.len()).await;
    assert_eq!(received, events);
    assert!(batches > 1, "{batches} batch(es)");
}

/// When the follower's session is killed, its feed ends with one retryable error.
#[tokio::test]
async fn a_lost_connection_ends_the_feed_with_an_error() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = rex_transport::open(&schema.uri()).expect("open");
    let mut feed = t.follow_events().await.expect("follow");
    let admin = admin(&server).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
             FROM pg_stat_activity WHERE application_name = $1",
            &[&channel(&schema)],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1);
    let error = tokio::time::timeout(WITHIN, feed.recv())
        .await
        .expect("the loss is noticed")
        .expect("an error before the end")
        .expect_err("no events were published");
    assert!(error.is_retryable(), "{error}");
    let end = tokio::time::timeout(WITHIN, feed.recv()).await;
    assert!(matches!(end, Ok(None)), "the feed ends after its error");
    until_followed(&t, false).await;
}
