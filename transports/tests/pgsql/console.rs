//! What the console's conformance cases leave to this backend: pausing and resuming across
//! instances (the resume's notification), and the time of failure on every statement that
//! fails a task for good.

use rex_transport::{Failure, ListState, Settlement, TaskFilter};

use super::*;

/// A waiter on a paused queue is not woken by its ready task; resuming the queue from another
/// instance wakes it (the resume notifies), and the task is then claimable.
#[tokio::test]
async fn resuming_wakes_a_waiter_on_another_instance() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let waiter_name = format!("{}_waiter", schema.name);
    let waiter = schema.open_as(&waiter_name);
    let operator = schema.open_as(&format!("{}_operator", schema.name));
    let admin = admin(&server).await;
    assert!(operator.set_paused("held", true).await.expect("pause"));
    let id = submit(&operator, "held").await;
    let waiting = {
        let waiter = Arc::clone(&waiter);
        tokio::spawn(async move { waiter.wait("held", LONG_WAIT).await })
    };
    until_waiter_checked(&admin, &waiter_name).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a paused queue's task is not ready");
    assert!(operator.set_paused("held", false).await.expect("resume"));
    tokio::time::timeout(GENEROUS, waiting)
        .await
        .expect("the waiter is woken up by the resume")
        .expect("waiter")
        .expect("wait");
    let task = waiter.claim("held", "owner", LEASE).await.expect("claim");
    assert_eq!(task.map(|task| task.id), Some(id));
}

/// A failure for good makes the time it happened the task's `run_at`, whichever statement
/// records it: `fail`, `settle`, or the failures of `settle_and_claim`.
#[tokio::test]
async fn every_final_failure_records_its_time() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = rex_transport::open(&schema.uri()).expect("open");
    let queue = "doomed";
    let long_ago = SubmitOptions {
        run_at: Some(SystemTime::now() - Duration::from_secs(3600)),
        ..SubmitOptions::default()
    };
    for _ in 0..3 {
        t.submit(queue, Payload::new(), &long_ago)
            .await
            .expect("submit");
    }
    let tasks = t
        .claim_batch(queue, "owner", LEASE, 3)
        .await
        .expect("claim");
    assert_eq!(tasks.len(), 3);
    let before = SystemTime::now() - Duration::from_millis(1);
    let fail = |n: usize| Settlement::Fail {
        lease: tasks[n].lease(),
        failure: Failure::error("no"),
        retry_at: None,
    };
    let failure = Failure::crash("killed");
    assert!(
        t.fail(&tasks[0].lease(), &failure, None)
            .await
            .expect("fail")
    );
    assert_eq!(t.settle(&[fail(1)]).await.expect("settle"), [true]);
    let (applied, _) = t
        .settle_and_claim(&[fail(2)], queue, "owner", LEASE, 1)
        .await
        .expect("settle_and_claim");
    assert_eq!(applied, [true]);

    for task in &tasks {
        let failed = t.task(task.id).await.expect("task").expect("kept");
        assert_eq!(failed.state, rex_transport::TaskState::Failed);
        assert!(failed.run_at.expect("run_at") >= before, "{failed:?}");
    }
    let recent = TaskFilter {
        state: Some(ListState::Failed),
        since: Some(before),
        ..TaskFilter::default()
    };
    assert_eq!(t.count(&recent).await.expect("count"), 3);
    let listed = t.failed(Some(queue)).await.expect("failed");
    assert!(listed.iter().all(|task| task.run_at >= Some(before)));
}

/// The listing's text is a plain substring: `%` and `_` are not wildcards.
#[tokio::test]
async fn listing_text_has_no_wildcards() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = rex_transport::open(&schema.uri()).expect("open");
    let payload = |text: &str| {
        rex_transport::normalize_payload(serde_json::json!({ "text": text })).expect("an object")
    };
    let options = SubmitOptions::default();
    t.submit("words", payload("50 percent"), &options)
        .await
        .expect("submit");
    let literal = t.submit("words", payload("50% off_now"), &options).await;
    let literal = literal.expect("submit").expect("an id");
    for text in ["0%", "f_n", "%", "_"] {
        let filter = TaskFilter {
            text: Some(text.to_string()),
            ..TaskFilter::default()
        };
        let page = t.list(&filter, None, 10).await.expect("list");
        let ids: Vec<_> = page.iter().map(|task| task.id).collect();
        assert_eq!(ids, [literal], "{text}");
    }
}
