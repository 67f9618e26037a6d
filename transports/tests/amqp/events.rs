//! Lifecycle events across processes (each instance here stands for one): a follower on one
//! instance is counted by the others as soon as it follows, and gets what they publish, in
//! order, however many messages a publish takes.

use super::*;
use rex_transport::{EventFeed, EventKind, TaskEvent};

/// Reads `count` events from `feed`, failing after 10 s.
async fn receive(feed: &mut EventFeed, count: usize) -> Vec<TaskEvent> {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while received.len() < count {
            let batch = feed.recv().await.expect("the feed ended");
            received.extend(batch.expect("the subscription failed"));
        }
    })
    .await
    .expect("the events arrived within 10 s");
    received
}

#[tokio::test]
async fn followers_get_what_other_instances_publish() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let (follower, publisher) = (&transports[0], &transports[1]);
    assert!(
        !publisher.followed().await.expect("followed"),
        "a fresh prefix"
    );
    let mut feed = follower.follow_events().await.expect("follow");
    for t in &transports {
        assert!(
            t.followed().await.expect("followed"),
            "once follow_events returns"
        );
    }

    let events: Vec<TaskEvent> = (1..=2)
        .map(|n| TaskEvent::new(EventKind::Submitted, "unique_queue_name", Some(n), 0))
        .collect();
    for event in &events {
        publisher
            .publish_events(std::slice::from_ref(event))
            .await
            .expect("publish");
    }
    assert_eq!(receive(&mut feed, events.len()).await, events);

    // Larger than a message (64 KiB): split, and received whole and in order.
    let many: Vec<TaskEvent> = (0..2_000)
        .map(|n| {
            let mut e = TaskEvent::new(EventKind::Failed, "unique_queue_name", Some(n), n);
            e.reason = Some(format!("{n} ").repeat(50));
            e
        })
        .collect();
    publisher.publish_events(&many).await.expect("publish");
    assert_eq!(receive(&mut feed, many.len()).await, many);
}
