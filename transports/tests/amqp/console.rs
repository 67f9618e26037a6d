//! What the console sees on RabbitMQ across processes (each instance here stands for one):
//! pauses reach other processes' claims and waits, running tasks are seen only by the process
//! that claimed them, listings give every message back in its place, heartbeats of several
//! masters.

use super::*;
use rex_transport::task::{from_epoch_ms, to_epoch_ms};
use rex_transport::{ListState, MasterRecord, TaskFilter, TaskState};

/// A pause on one instance stops another's claims within a second (it caches the flag for
/// 500 ms); a wait there blocks on the paused queue's ready task until the resume wakes it.
#[tokio::test]
async fn pauses_reach_other_processes() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let (operator, worker) = (&transports[0], &transports[1]);
    let queue = "paused_elsewhere";
    for n in 0..3 {
        worker
            .submit(queue, payload(n), &SubmitOptions::default())
            .await
            .expect("submit");
    }
    // The worker has seen the queue unpaused (and caches that).
    let first = worker.claim(queue, "w", LEASE).await.expect("claim");
    assert!(first.is_some());
    assert!(operator.set_paused(queue, true).await.expect("pause"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        worker
            .claim(queue, "w", LEASE)
            .await
            .expect("claim")
            .is_none(),
        "a paused queue hands out nothing within a second"
    );
    assert!(
        worker
            .claim_batch(queue, "w", LEASE, 5)
            .await
            .expect("claim_batch")
            .is_empty()
    );

    let waiter = {
        let worker = Arc::clone(worker);
        tokio::spawn(async move {
            let start = Instant::now();
            worker
                .wait(queue, Duration::from_secs(600))
                .await
                .map(|()| start.elapsed())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.blocked_waiters() == 0 {
        assert!(
            Instant::now() < deadline,
            "ready tasks of a paused queue end no wait"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resumed = Instant::now();
    assert!(operator.set_paused(queue, false).await.expect("resume"));
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the resume wakes the waiter")
        .expect("waiter panicked")
        .expect("wait");
    eprintln!("woken {:?} after the resume", resumed.elapsed());
    let task = worker.claim(queue, "w", LEASE).await.expect("claim");
    assert!(task.is_some(), "claimable once resumed");
    let stats = operator.stats().await.expect("stats");
    assert!(stats.iter().any(|s| s.queue == queue && !s.paused));
}

/// A running task is an unacknowledged delivery of the claiming connection: another process
/// cannot look it up, list or count it; the claiming process can.
#[tokio::test]
async fn running_tasks_are_seen_only_by_their_claimer() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let (operator, worker) = (&transports[0], &transports[1]);
    let queue = "running_elsewhere";
    let id = operator
        .submit(queue, payload(1), &SubmitOptions::default())
        .await
        .expect("submit")
        .expect("no key");
    let task = worker
        .claim(queue, "w_owner", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(task.id, id);

    let seen = worker
        .task(id)
        .await
        .expect("task")
        .expect("its claimer sees it");
    assert_eq!(seen.state, TaskState::Running);
    assert_eq!(seen.owner.as_deref(), Some("w_owner"));
    assert!(
        operator.task(id).await.expect("task").is_none(),
        "another process cannot read a delivery held by the claimer"
    );
    let running = TaskFilter {
        queue: Some(queue.into()),
        state: Some(ListState::Running),
        ..TaskFilter::default()
    };
    assert!(
        operator
            .list(&running, None, 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(operator.count(&running).await.expect("count"), 0);
    assert_eq!(worker.count(&running).await.expect("count"), 1);
    assert!(worker.complete(&task.lease(), &[]).await.expect("complete"));
}

/// Listing ready and delayed tasks takes their messages and gives them back in place: the
/// claim order afterwards is the submission order, and nothing is lost.
#[tokio::test]
async fn listings_give_messages_back_in_place() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let (operator, worker) = (&transports[0], &transports[1]);
    let queue = "browsed";
    let mut ids = Vec::new();
    for n in 0..150 {
        let id = worker
            .submit(queue, payload(n), &SubmitOptions::default())
            .await
            .expect("submit")
            .expect("no key");
        ids.push(id);
    }
    let later = SubmitOptions {
        run_at: Some(SystemTime::now() + Duration::from_secs(3600)),
        ..SubmitOptions::default()
    };
    worker
        .submit(queue, payload(999), &later)
        .await
        .expect("delayed");
    let everything = TaskFilter {
        queue: Some(queue.into()),
        ..TaskFilter::default()
    };
    for _ in 0..3 {
        let page = operator.list(&everything, None, 500).await.expect("list");
        assert_eq!(page.len(), ids.len() + 1);
        let text = TaskFilter {
            text: Some("\"n\":7".into()),
            ..everything.clone()
        };
        let found = operator.count(&text).await.expect("count by text");
        assert_eq!(found, 11, "7 and 70..=79");
    }
    let counts = worker.counts(queue).await.expect("counts");
    assert_eq!((counts.ready, counts.delayed), (ids.len() as u64, 1));
    let mut claimed = Vec::new();
    while let Some(task) = worker.claim(queue, "w", LEASE).await.expect("claim") {
        claimed.push(task.id);
        assert!(worker.complete(&task.lease(), &[]).await.expect("complete"));
    }
    assert_eq!(
        claimed, ids,
        "claimed in submission order after the listings"
    );
}

/// Several masters beat at once from different processes; any process lists them, and one
/// master's withdrawal leaves the others.
#[tokio::test]
async fn heartbeats_of_several_masters() {
    let Some((transports, _cleanup)) = open(3) else {
        return skipped();
    };
    let now = from_epoch_ms(to_epoch_ms(SystemTime::now()));
    let record = |id: &str, beat: u64| MasterRecord {
        id: id.to_string(),
        host: "h".into(),
        pid: 1,
        version: "0".into(),
        started_at: now,
        beat_at: now + Duration::from_millis(beat),
        expires_at: now + Duration::from_secs(60),
        scheduler: false,
        children: Vec::new(),
        totals: Vec::new(),
    };
    for beat in 0..5 {
        let (a, b) = (record("host_a:1:1", beat), record("host_b:2:2", beat));
        let (a, b) = tokio::join!(transports[0].beat(&a), transports[1].beat(&b));
        a.expect("beat");
        b.expect("beat");
    }
    let masters = transports[2].masters().await.expect("masters");
    assert_eq!(masters, [record("host_a:1:1", 4), record("host_b:2:2", 4)]);
    transports[0]
        .forget_master("host_a:1:1")
        .await
        .expect("forget");
    let masters = transports[2].masters().await.expect("masters");
    assert_eq!(masters, [record("host_b:2:2", 4)]);
}
