//! Many workers on one SQLite file: separate connections from separate OS threads, each with
//! its own runtime — the shape of several worker processes sharing `sqlite:PATH`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use rex_transport::sqlite::SqliteTransport;
use rex_transport::{Failure, Payload, QueueCounts, SubmitOptions, Transport};

const TASKS: usize = 2_000;
const WORKERS: usize = 4;
const QUEUE: &str = "shared";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Claim until every task is completed; release or fail-and-retry some on the way, so tasks
/// change hands. Returns the ids this worker completed.
fn worker(path: &Path, n: usize, start: &Barrier, submitted: &AtomicBool) -> Vec<i64> {
    start.wait(); // open the fresh file all at once: schema creation must not race
    let t = SqliteTransport::open(path).expect("open");
    let owner = format!("worker{n}");
    let mut rng = fastrand::Rng::with_seed(n as u64);
    let rt = runtime();
    rt.block_on(async {
        let mut completed = Vec::new();
        loop {
            let Some(task) = t
                .claim(QUEUE, &owner, Duration::from_secs(60))
                .await
                .expect("claim")
            else {
                // Read the flag first: once all is submitted, an empty queue stays empty.
                let all_submitted = submitted.load(Ordering::SeqCst);
                if all_submitted && t.counts(QUEUE).await.expect("counts") == QueueCounts::default()
                {
                    return completed;
                }
                // Submitters are still going, or another worker holds the last tasks.
                t.wait(QUEUE, Duration::from_millis(20))
                    .await
                    .expect("wait");
                continue;
            };
            let settled = match rng.u8(0..10) {
                0 => t.release(&task.lease(), "shutting down").await,
                1 => {
                    t.fail(
                        &task.lease(),
                        &Failure::error("Oops!"),
                        Some(std::time::SystemTime::now()),
                    )
                    .await
                }
                _ => {
                    let done = t.complete(&task.lease(), &[]).await;
                    completed.push(task.id);
                    done
                }
            };
            assert!(
                settled.expect("settle"),
                "{owner} holds the only lease of task {}",
                task.id
            );
        }
    })
}

#[test]
fn every_task_is_completed_exactly_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = Arc::new(dir.path().join("rex.sqlite3"));
    let start = Arc::new(Barrier::new(WORKERS + 1));
    let all_submitted = Arc::new(AtomicBool::new(false));

    let workers: Vec<_> = (0..WORKERS)
        .map(|n| {
            let (path, start, all_submitted) = (
                Arc::clone(&path),
                Arc::clone(&start),
                Arc::clone(&all_submitted),
            );
            std::thread::spawn(move || worker(&path, n, &start, &all_submitted))
        })
        .collect();

    // Submit while the workers are already claiming.
    start.wait();
    let t = SqliteTransport::open(path.as_path()).expect("open");
    let mut submitted = Vec::new();
    runtime().block_on(async {
        for n in 0..TASKS {
            let mut payload = Payload::new();
            payload.insert("n".into(), n.into());
            submitted.push(
                t.submit(QUEUE, payload, &SubmitOptions::default())
                    .await
                    .expect("submit")
                    .expect("id"),
            );
        }
    });
    all_submitted.store(true, Ordering::SeqCst);

    let mut completions = HashMap::<i64, usize>::new();
    for worker in workers {
        for id in worker.join().expect("worker panicked") {
            *completions.entry(id).or_default() += 1;
        }
    }
    // A worker may stop while others still finish the last tasks, but together they did all.
    assert_eq!(completions.len(), TASKS, "every task completed");
    assert!(
        completions.values().all(|&n| n == 1),
        "no task completed twice"
    );
    assert!(submitted.iter().all(|id| completions.contains_key(id)));
}
