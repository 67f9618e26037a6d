//! What the operator console reads and does: pause flags, task lookup, filtered listings with
//! keyset pagination, counts, purging selected failed tasks, master heartbeats.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::task::{from_epoch_ms, to_epoch_ms};
use rex_transport::{
    ChildRecord, Counters, Failure, ListState, MasterRecord, Outcome, QueueTotals, Settlement,
    SubmitOptions, TaskFilter, TaskId, TaskState, Transport,
};
use serde_json::json;

use crate::{LEASE, claim, counts, ready, submit, submit_with, unique};
use rex_transport::TransportError;

/// A paused queue accepts submits but hands out nothing, by any claim, until it is resumed;
/// `stats` shows it paused, and lists it even when it has no task.
pub async fn case_pause_stops_claims(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("paused"), unique("owner"));
    let empty = unique("paused_empty");
    let first = submit(&t, &queue, json!({"n": 1})).await;
    assert!(t.set_paused(&queue, true).await.expect("pause"));
    assert!(!t.set_paused(&queue, true).await.expect("pause again"));
    assert!(
        t.set_paused(&empty, true)
            .await
            .expect("pause an empty queue")
    );
    submit(&t, &queue, json!({"n": 2})).await;

    assert!(claim(&t, &queue, &owner).await.is_none(), "claim");
    let batch = t.claim_batch(&queue, &owner, LEASE, 10).await;
    assert!(batch.expect("claim_batch").is_empty(), "claim_batch");
    let (_, claimed) = t
        .settle_and_claim(&[], &queue, &owner, LEASE, 10)
        .await
        .expect("settle_and_claim");
    assert!(claimed.is_empty(), "settle_and_claim");
    assert_eq!(counts(&t, &queue).await, ready(2));

    let paused = t.paused().await.expect("paused");
    assert!(
        paused.contains(&queue) && paused.contains(&empty),
        "{paused:?}"
    );
    let stats = t.stats().await.expect("stats");
    let row = |q: &str| stats.iter().find(|s| s.queue == q).cloned();
    let listed = row(&queue).expect("the paused queue is listed");
    assert!(listed.paused);
    assert_eq!(listed.pending, 2);
    let listed_empty = row(&empty).expect("a paused queue without tasks is listed");
    assert!(listed_empty.paused);
    assert_eq!(listed_empty.pending, 0);

    assert!(t.set_paused(&queue, false).await.expect("resume"));
    assert!(!t.set_paused(&queue, false).await.expect("resume again"));
    assert!(t.set_paused(&empty, false).await.expect("resume"));
    let paused = t.paused().await.expect("paused");
    assert!(!paused.contains(&queue) && !paused.contains(&empty));
    let task = claim(&t, &queue, &owner)
        .await
        .expect("claimable once resumed");
    assert_eq!(task.id, first);
    let stats = t.stats().await.expect("stats");
    assert!(
        !stats.iter().any(|s| s.queue == empty),
        "no tasks, not paused: not listed"
    );
    assert!(!stats.iter().any(|s| s.queue == queue && s.paused));
}

/// Resuming a queue with a ready task lets a waiter on it return (long before its timeout).
pub async fn case_resume_then_wait_returns(t: Arc<dyn Transport>) {
    let queue = unique("resumed");
    assert!(t.set_paused(&queue, true).await.expect("pause"));
    submit(&t, &queue, json!({})).await;
    assert!(t.set_paused(&queue, false).await.expect("resume"));
    let started = std::time::Instant::now();
    t.wait(&queue, Duration::from_secs(60)).await.expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "wait on a resumed queue with a ready task returns"
    );
}

/// `task` finds a task in every kept state, with its owner while running and its history once
/// it failed; a completed task is not kept; an unknown id is `None`.
pub async fn case_task_lookup(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("lookup"), unique("owner"));
    let id = submit(&t, &queue, json!({"word": "alpha"})).await;
    let pending = t.task(id).await.expect("task").expect("a pending task");
    assert_eq!((pending.id, pending.queue.as_str()), (id, queue.as_str()));
    assert_eq!(pending.state, TaskState::Pending);
    assert_eq!(pending.payload.get("word"), Some(&json!("alpha")));
    assert!(pending.run_at.is_some(), "a pending task has its due time");

    // RabbitMQ's look-up took the message and gave it back: the broker puts it back in the
    // queue after the look-up's channel closes, so the claim waits for it as a worker does.
    let mut task = None;
    for _ in 0..20 {
        task = claim(&t, &queue, &owner).await;
        if task.is_some() {
            break;
        }
        t.wait(&queue, Duration::from_millis(500))
            .await
            .expect("wait");
    }
    let task = task.expect("claimable");
    let running = t.task(id).await.expect("task").expect("a running task");
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(running.owner.as_deref(), Some(owner.as_str()));

    let before = SystemTime::now() - Duration::from_secs(1);
    assert!(
        t.fail(&task.lease(), &Failure::crash("killed by SIGKILL"), None)
            .await
            .expect("fail")
    );
    let failed = t.task(id).await.expect("task").expect("a failed task");
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!((failed.attempts, failed.crashes), (1, 1));
    assert_eq!(failed.last_error.as_deref(), Some("killed by SIGKILL"));
    assert_eq!(failed.history.len(), 1);
    assert_eq!(failed.history[0].outcome, Outcome::Crash);
    assert_eq!(
        failed.history[0].reason.as_deref(),
        Some("killed by SIGKILL")
    );
    let failed_at = failed
        .run_at
        .expect("a failed task's run_at is when it failed");
    assert!(
        failed_at >= before,
        "run_at of a failed task is its failure time"
    );

    let _looking = crate::completed::PRUNING.read().await;
    let done = submit(&t, &queue, json!({})).await;
    let task = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!(task.id, done);
    let complete = [Settlement::Complete {
        lease: task.lease(),
        submits: vec![],
        result: None,
    }];
    assert_eq!(t.settle(&complete).await.expect("settle"), [true]);
    let completed = t.task(done).await.expect("task");
    assert_eq!(
        completed.map(|task| task.state),
        t.keeps_completed().then_some(TaskState::Done),
        "completed tasks are kept where the transport keeps them"
    );
    assert!(t.task(done + 1_000_000).await.expect("task").is_none());
}

/// `list` pages by id (keyset: each page starts after the last id of the previous one),
/// narrows by queue, state, text and time; `count` agrees with it.
pub async fn case_list_filters_and_pages(t: Arc<dyn Transport>) {
    let (queue, other, owner) = (unique("listed"), unique("listed_other"), unique("owner"));
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    ];
    let mut ids = Vec::new();
    for word in words {
        ids.push(submit(&t, &queue, json!({"word": format!("needle {word}")})).await);
    }
    submit(&t, &other, json!({"word": "needle elsewhere"})).await;
    let later = SubmitOptions {
        run_at: Some(SystemTime::now() + Duration::from_secs(3600)),
        idempotency_key: None,
    };
    let delayed = submit_with(&t, &queue, json!({"word": "later"}), later)
        .await
        .expect("delayed submit");
    // The first two become running, then one of them failed.
    let a = claim(&t, &queue, &owner).await.expect("claimable");
    let b = claim(&t, &queue, &owner).await.expect("claimable");
    assert_eq!((a.id, b.id), (ids[0], ids[1]));
    let failed_from = SystemTime::now() - Duration::from_secs(1);
    assert!(
        t.fail(&a.lease(), &Failure::error("boom: disk quota"), None)
            .await
            .expect("fail")
    );

    let of = |state: Option<ListState>| TaskFilter {
        queue: Some(queue.clone()),
        state,
        ..TaskFilter::default()
    };
    let list = |filter: TaskFilter, after: Option<TaskId>, limit: usize| {
        let t = Arc::clone(&t);
        async move {
            let page = t.list(&filter, after, limit).await.expect("list");
            page.iter().map(|task| task.id).collect::<Vec<_>>()
        }
    };
    let ready_ids = ids[2..].to_vec();
    assert_eq!(list(of(Some(ListState::Ready)), None, 100).await, ready_ids);
    assert_eq!(
        list(of(Some(ListState::Delayed)), None, 100).await,
        [delayed]
    );
    assert_eq!(list(of(Some(ListState::Running)), None, 100).await, [b.id]);
    assert_eq!(list(of(Some(ListState::Failed)), None, 100).await, [a.id]);
    let mut all = ids.clone();
    all.push(delayed);
    assert_eq!(
        list(of(None), None, 100).await,
        all,
        "every kept state, by id"
    );

    // Keyset pages of two cover the ready tasks once each, in order.
    let mut paged = Vec::new();
    loop {
        let page = list(of(Some(ListState::Ready)), paged.last().copied(), 2).await;
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, ready_ids);

    // Text: a substring of the payload, of the last error, or the id.
    let text = |text: &str, state: Option<ListState>| TaskFilter {
        text: Some(text.to_string()),
        ..of(state)
    };
    assert_eq!(list(text("charlie", None), None, 100).await, [ids[2]]);
    assert_eq!(
        list(text("needle", Some(ListState::Ready)), None, 100).await,
        ready_ids
    );
    assert_eq!(list(text("disk quota", None), None, 100).await, [a.id]);
    assert_eq!(
        list(text(&ids[4].to_string(), None), None, 100).await,
        [ids[4]]
    );
    assert!(list(text("no such text", None), None, 100).await.is_empty());
    let everywhere = TaskFilter {
        text: Some("needle".into()),
        ..TaskFilter::default()
    };
    let found = list(everywhere.clone(), None, 500).await;
    assert!(
        found.len() > words.len(),
        "without a queue, every queue is searched"
    );

    // Time: a failed task's run_at is its failure time.
    let since = |since: SystemTime| TaskFilter {
        since: Some(since),
        ..of(Some(ListState::Failed))
    };
    assert_eq!(list(since(failed_from), None, 100).await, [a.id]);
    assert!(
        list(
            since(SystemTime::now() + Duration::from_secs(60)),
            None,
            100
        )
        .await
        .is_empty()
    );
    let until = TaskFilter {
        until: Some(failed_from),
        ..of(Some(ListState::Failed))
    };
    assert!(list(until, None, 100).await.is_empty());

    for (filter, expected) in [
        (of(Some(ListState::Ready)), ready_ids.len()),
        (of(Some(ListState::Failed)), 1),
        (of(None), all.len()),
        (text("needle", None), words.len()),
    ] {
        assert_eq!(
            t.count(&filter).await.expect("count"),
            expected as u64,
            "{filter:?}"
        );
    }
}

/// `purge_failed` deletes only the failed tasks among the ids it is given.
pub async fn case_purge_failed_selected(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("purge_sel"), unique("owner"));
    let mut failed = Vec::new();
    for _ in 0..3 {
        failed.push(crate::failed_task(&t, &queue, &owner).await);
    }
    let pending = submit(&t, &queue, json!({})).await;
    let purged = t.purge_failed(&[failed[0], failed[2], pending]).await;
    assert_eq!(purged.expect("purge_failed"), 2);
    let c = counts(&t, &queue).await;
    assert_eq!((c.ready, c.failed), (1, 1));
    assert!(t.task(failed[0]).await.expect("task").is_none());
    assert_eq!(
        t.task(failed[1])
            .await
            .expect("task")
            .map(|task| task.state),
        Some(TaskState::Failed)
    );
    assert!(t.task(pending).await.expect("task").is_some());
    assert_eq!(t.purge_failed(&[]).await.expect("purge nothing"), 0);
}

/// What a master's children did to queue `foo`: `processed` tasks of every kind.
fn totals(processed: u64) -> Counters {
    let mut counters = Counters {
        succeeded: processed,
        failed: 1,
        retried: 2,
        crashed: 3,
        ..Counters::default()
    };
    counters.run.observe(Duration::from_millis(processed));
    counters.wait.observe(Duration::from_secs(90));
    counters
}

/// A master's heartbeat is listed until it expires, replaced by its next beat, and gone once
/// forgotten.
pub async fn case_master_heartbeats(t: Arc<dyn Transport>) {
    // Whole milliseconds: what every backend stores.
    let now = from_epoch_ms(to_epoch_ms(SystemTime::now()));
    let record = |id: &str, expires_in: Duration, processed: u64| MasterRecord {
        id: id.to_string(),
        host: "host-a".into(),
        pid: 4242,
        version: "0.1.0".into(),
        started_at: now - Duration::from_secs(60),
        beat_at: now,
        expires_at: now + expires_in,
        scheduler: true,
        children: vec![ChildRecord {
            queue: "foo".into(),
            slot: 0,
            pid: Some(4243),
            task: Some(17),
            task_since: Some(now),
            processed,
            restarts: 2,
            rss_bytes: Some(9 << 20),
        }],
        totals: vec![QueueTotals {
            queue: "foo".into(),
            counters: totals(processed),
        }],
    };
    let (live, gone) = (unique("master"), unique("master"));
    t.beat(&record(&live, Duration::from_secs(60), 1))
        .await
        .expect("beat");
    t.beat(&record(&gone, Duration::from_millis(200), 1))
        .await
        .expect("beat");
    t.beat(&record(&live, Duration::from_secs(60), 5))
        .await
        .expect("beat again");
    // Let the short record age past its expiry.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let masters = t.masters().await.expect("masters");
    let mine: Vec<_> = masters
        .iter()
        .filter(|m| m.id == live || m.id == gone)
        .collect();
    assert_eq!(mine.len(), 1, "the expired record is not listed: {mine:?}");
    let listed = mine[0];
    assert_eq!(listed.id, live);
    assert_eq!(listed.children.len(), 1);
    assert_eq!(
        listed.children[0].processed, 5,
        "the latest beat replaced the first"
    );
    assert_eq!(
        listed,
        &record(&live, Duration::from_secs(60), 5),
        "stored as published"
    );
    let ids: Vec<&str> = masters.iter().map(|m| m.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "sorted by id");

    t.forget_master(&live).await.expect("forget");
    let masters = t.masters().await.expect("masters");
    assert!(!masters.iter().any(|m| m.id == live));
}

/// A pending task (ready or delayed) is cancelled at once: failed, its attempt recorded as
/// cancelled, counted neither as an error nor as a crash. A running one is not; its master is
/// asked through a request naming the attempt, and records the attempt as cancelled. A
/// transport that cannot cancel says so (RabbitMQ: see `docs/console.md`).
pub async fn case_cancel(t: Arc<dyn Transport>) {
    if let Err(TransportError::Unsupported(_)) = t.cancel_requests().await {
        return;
    }
    let (queue, owner) = (unique("cancel"), unique("owner"));
    let reason = "cancelled by an operator";
    let running = submit(&t, &queue, json!({"n": 0})).await;
    let claimed = claim(&t, &queue, &owner).await.expect("a task");
    assert_eq!(claimed.id, running);
    let ready = submit(&t, &queue, json!({"n": 1})).await;
    let later = SubmitOptions {
        run_at: Some(SystemTime::now() + Duration::from_secs(3600)),
        ..SubmitOptions::default()
    };
    let delayed = submit_with(&t, &queue, json!({"n": 2}), later)
        .await
        .expect("an id");
    for id in [ready, delayed] {
        assert!(t.cancel_pending(id, reason).await.expect("cancel"), "{id}");
        assert!(!t.cancel_pending(id, reason).await.expect("cancel again"));
        let task = t.task(id).await.expect("task").expect("kept");
        assert_eq!(task.state, TaskState::Failed);
        assert_eq!(task.last_error.as_deref(), Some(reason));
        assert_eq!((task.errors, task.crashes), (0, 0));
        let last = task.history.last().expect("the cancelled attempt");
        assert_eq!(
            (last.outcome, last.reason.as_deref()),
            (Outcome::Cancelled, Some(reason))
        );
    }
    assert!(
        !t.cancel_pending(running, reason)
            .await
            .expect("not pending")
    );
    t.request_cancel(running, claimed.attempt)
        .await
        .expect("request");
    t.request_cancel(running, claimed.attempt)
        .await
        .expect("request again");
    let requests = t.cancel_requests().await.expect("requests");
    let mine: Vec<_> = requests.iter().filter(|(id, _)| *id == running).collect();
    assert_eq!(mine, [&(running, claimed.attempt)]);
    let failure = Failure::cancelled(reason);
    assert!(
        t.fail(&claimed.lease(), &failure, None)
            .await
            .expect("fail")
    );
    let task = t.task(running).await.expect("task").expect("kept");
    assert_eq!(
        (task.state, task.errors, task.crashes),
        (TaskState::Failed, 0, 0)
    );
    assert_eq!(
        task.history.last().map(|a| a.outcome),
        Some(Outcome::Cancelled)
    );
    let c = counts(&t, &queue).await;
    assert_eq!((c.ready, c.delayed, c.running, c.failed), (0, 0, 0, 3));
    // A retry starts counting attempts again: the retried task's requests go with it.
    t.retry_failed(&rex_transport::Selector::Ids(vec![running]))
        .await
        .expect("retry");
    let requests = t.cancel_requests().await.expect("requests");
    assert!(
        !requests.iter().any(|(id, _)| *id == running),
        "{requests:?}"
    );
}
