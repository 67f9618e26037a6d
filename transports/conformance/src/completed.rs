//! Completed tasks: kept as `done` with the worker's result and their attempts (each with its
//! start), looked up and listed but never counted as work; pruned by age and by a cap per
//! queue. RabbitMQ keeps none, and says so with `keeps_completed`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rex_transport::task::to_epoch_ms;
use rex_transport::{
    Failure, ListState, Outcome, Settlement, TaskFilter, TaskId, TaskState, Transport,
};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::{claim, counts, submit, unique};

/// Pruning is transport-wide: the cases that look completed tasks up hold this for reading,
/// the pruning case for writing, so that it never prunes what another case is looking at.
pub(crate) static PRUNING: RwLock<()> = RwLock::const_new(());

/// Complete the next task of `queue` with `result`; its id.
async fn complete(t: &Arc<dyn Transport>, queue: &str, result: Option<Value>) -> TaskId {
    let task = claim(t, queue, &unique("owner")).await.expect("claimable");
    let done = [Settlement::Complete {
        lease: task.lease(),
        submits: vec![],
        result,
    }];
    assert_eq!(t.settle(&done).await.expect("settle"), [true]);
    task.id
}

/// A completed task keeps its result and its attempts, each with when it started; it is
/// listed under `done` only, and counted nowhere.
pub async fn case_completed_kept_with_result(t: Arc<dyn Transport>) {
    let _looking = PRUNING.read().await;
    let queue = unique("completed");
    let before = to_epoch_ms(SystemTime::now());
    let id = submit(&t, &queue, json!({"numbers": [1, 2, 3]})).await;
    // A first attempt fails and is retried at once; the second completes.
    let task = claim(&t, &queue, &unique("owner"))
        .await
        .expect("claimable");
    let retry = [Settlement::Fail {
        lease: task.lease(),
        failure: Failure::error("flaky"),
        retry_at: Some(SystemTime::now()),
    }];
    assert_eq!(t.settle(&retry).await.expect("settle"), [true]);
    let completed = complete(&t, &queue, Some(json!({"sum": 6, "text": "<b>"}))).await;
    assert_eq!(completed, id);
    let found = t.task(id).await.expect("task");
    if !t.keeps_completed() {
        assert!(found.is_none(), "{} keeps no completed task", t.describe());
        return;
    }
    let found = found.expect("a completed task is kept");
    assert_eq!(found.state, TaskState::Done);
    assert_eq!(found.result, Some(json!({"sum": 6, "text": "<b>"})));
    assert_eq!(found.attempts, 2);
    let outcomes: Vec<Outcome> = found.history.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::Error, Outcome::Done]);
    for attempt in &found.history {
        let started = attempt.started_at.expect("each attempt records its start");
        assert!(
            before <= started && started <= attempt.finished_at,
            "{attempt:?} started after {before}"
        );
    }
    let completed_at = found.run_at.map(to_epoch_ms).expect("completion time");
    assert_eq!(completed_at, found.history[1].finished_at);

    let done = TaskFilter {
        queue: Some(queue.clone()),
        state: Some(ListState::Done),
        ..TaskFilter::default()
    };
    let listed: Vec<TaskId> = t
        .list(&done, None, 10)
        .await
        .expect("list")
        .iter()
        .map(|task| task.id)
        .collect();
    assert_eq!(listed, [id]);
    assert_eq!(t.count(&done).await.expect("count"), 1);
    let any = TaskFilter {
        queue: Some(queue.clone()),
        ..TaskFilter::default()
    };
    assert!(t.list(&any, None, 10).await.expect("list").is_empty());
    assert_eq!(counts(&t, &queue).await, Default::default());
    let stats = t.stats().await.expect("stats");
    if let Some(row) = stats.iter().find(|s| s.queue == queue) {
        assert_eq!((row.pending, row.running, row.failed), (0, 0, 0));
    }

    // A completion without a result keeps none.
    submit(&t, &queue, json!({})).await;
    let plain = complete(&t, &queue, None).await;
    let plain = t.task(plain).await.expect("task").expect("kept");
    assert_eq!((plain.state, plain.result), (TaskState::Done, None));
}

/// `prune_completed` deletes the completed tasks beyond the newest `keep_per_queue` of each
/// queue, and those completed before `before`; pending and failed tasks are never touched.
pub async fn case_prune_completed(t: Arc<dyn Transport>) {
    let _pruning = PRUNING.write().await;
    let queue = unique("pruned");
    let mut ids = Vec::new();
    for n in 0..4 {
        submit(&t, &queue, json!({ "n": n })).await;
        ids.push(complete(&t, &queue, None).await);
    }
    let pending = submit(&t, &queue, json!({"pending": true})).await;
    if !t.keeps_completed() {
        t.prune_completed(UNIX_EPOCH, 0).await.expect("prune");
        assert!(t.task(ids[0]).await.expect("task").is_none());
        return;
    }
    let kept = |ids: Vec<TaskId>| {
        let t = Arc::clone(&t);
        async move {
            let mut kept = Vec::new();
            for id in ids {
                if t.task(id).await.expect("task").is_some() {
                    kept.push(id);
                }
            }
            kept
        }
    };

    // The cap: the two newest stay.
    let pruned = t.prune_completed(UNIX_EPOCH, 2).await.expect("prune");
    assert!(pruned >= 2, "pruned {pruned}");
    assert_eq!(kept(ids.clone()).await, ids[2..]);

    // The age: what completed before the newest one's completion goes (a task completed in
    // the same millisecond stays).
    let at = |id: TaskId| {
        let t = Arc::clone(&t);
        async move {
            let task = t.task(id).await.expect("task").expect("kept");
            task.run_at.expect("completion time")
        }
    };
    let (older, newest) = (at(ids[2]).await, at(ids[3]).await);
    t.prune_completed(newest, u64::MAX).await.expect("prune");
    let expect: Vec<TaskId> = if older < newest {
        vec![ids[3]]
    } else {
        ids[2..].to_vec()
    };
    assert_eq!(kept(ids.clone()).await, expect);

    t.prune_completed(UNIX_EPOCH, 0).await.expect("prune");
    assert!(kept(ids.clone()).await.is_empty());
    let left = t.task(pending).await.expect("task").expect("pending stays");
    assert_eq!(left.state, TaskState::Pending);
}
