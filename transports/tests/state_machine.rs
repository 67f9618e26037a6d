//! Random operation sequences against the transports and a tiny model of the contract. After
//! every step the counts, the failed and running tasks agree with the model, and no task is
//! ever lost: each submitted task is pending, running, failed, completed or purged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::sample::Index;
use rex_transport::memory::MemoryTransport;
use rex_transport::sqlite::SqliteTransport;
use rex_transport::{
    Failure, Lease, Payload, PurgeWhich, QueueCounts, Selector, SubmitOptions, TaskId, Transport,
};

const QUEUE: &str = "machine";
const OWNER: &str = "owner";

#[derive(Clone, Debug)]
enum Op {
    Submit,
    Claim,
    /// Settlements pick any lease issued so far, so old (stale) leases come up often.
    Complete(Index),
    Fail {
        lease: Index,
        retry: bool,
        crash: bool,
    },
    Release(Index),
    RetryFailedAll,
    PurgeFailed,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Submit),
        3 => Just(Op::Claim),
        2 => any::<Index>().prop_map(Op::Complete),
        2 => (any::<Index>(), any::<bool>(), any::<bool>())
            .prop_map(|(lease, retry, crash)| Op::Fail { lease, retry, crash }),
        1 => any::<Index>().prop_map(Op::Release),
        1 => Just(Op::RetryFailedAll),
        1 => Just(Op::PurgeFailed),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Failed,
}

#[derive(Debug)]
struct ModelTask {
    state: State,
    token: u64,
    attempts: u32,
    /// When it last became pending, in milliseconds: the transport's `run_at` lies between
    /// these bounds, read just before and just after the operation.
    due: (i64, i64),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The contract in a few lines: claims by due time then id, fenced settlements, everything
/// ready at once.
#[derive(Default)]
struct Model {
    tasks: BTreeMap<TaskId, ModelTask>,
    completed: BTreeSet<TaskId>,
    purged: BTreeSet<TaskId>,
    submitted: Vec<TaskId>,
}

impl Model {
    fn current(&mut self, lease: &Lease) -> Option<&mut ModelTask> {
        self.tasks
            .get_mut(&lease.id)
            .filter(|t| t.state == State::Running && t.token == lease.token)
    }

    fn ids(&self, state: State) -> Vec<TaskId> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.state == state)
            .map(|(&id, _)| id)
            .collect()
    }

    fn count(&self, state: State) -> u64 {
        self.ids(state).len() as u64
    }

    /// A pending task that must be claimed before `claimed`: surely due earlier, or due no
    /// later with a lower id. (Within one millisecond the model cannot tell the order.)
    fn surely_before(&self, claimed: TaskId) -> Option<TaskId> {
        let due = self.tasks.get(&claimed)?.due;
        self.tasks
            .iter()
            .filter(|&(&id, t)| t.state == State::Pending && id != claimed)
            .find(|&(&id, t)| t.due.1 < due.0 || (t.due.1 <= due.0 && id < claimed))
            .map(|(&id, _)| id)
    }
}

async fn run(t: &dyn Transport, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut leases: Vec<Lease> = Vec::new();
    let pick = |leases: &[Lease], index: &Index| {
        (!leases.is_empty()).then(|| leases[index.index(leases.len())])
    };

    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Submit => {
                let before = now_ms();
                let id = t
                    .submit(QUEUE, Payload::new(), &SubmitOptions::default())
                    .await
                    .unwrap()
                    .unwrap();
                prop_assert!(!model.submitted.contains(&id), "ids are never reused");
                model.submitted.push(id);
                model.tasks.insert(
                    id,
                    ModelTask {
                        state: State::Pending,
                        token: 0,
                        attempts: 0,
                        due: (before, now_ms()),
                    },
                );
            }
            Op::Claim => {
                let claimed = t
                    .claim(QUEUE, OWNER, Duration::from_secs(600))
                    .await
                    .unwrap();
                let pending = model.ids(State::Pending);
                prop_assert_eq!(claimed.is_some(), !pending.is_empty(), "a claim when ready");
                if let Some(task) = &claimed {
                    prop_assert!(pending.contains(&task.id), "claimed a pending task");
                    let earlier = model.surely_before(task.id);
                    prop_assert_eq!(earlier, None, "claim order: due time, then id");
                }
                if let Some(task) = claimed {
                    let m = model.tasks.get_mut(&task.id).unwrap();
                    (m.state, m.token, m.attempts) = (State::Running, m.token + 1, m.attempts + 1);
                    prop_assert_eq!((task.lease_token, task.attempt), (m.token, m.attempts));
                    leases.push(task.lease());
                }
            }
            Op::Complete(index) => {
                let Some(lease) = pick(&leases, index) else {
                    continue;
                };
                let expected = model.current(&lease).is_some();
                prop_assert_eq!(
                    t.complete(&lease, &[]).await.unwrap(),
                    expected,
                    "complete {:?}",
                    lease
                );
                if expected {
                    model.tasks.remove(&lease.id);
                    model.completed.insert(lease.id);
                }
            }
            Op::Fail {
                lease,
                retry,
                crash,
            } => {
                let Some(lease) = pick(&leases, lease) else {
                    continue;
                };
                let failure = if *crash {
                    Failure::crash("crashed")
                } else {
                    Failure::error("Oops!")
                };
                let before = now_ms();
                let retry_at = retry.then(SystemTime::now);
                let expected = model.current(&lease).is_some();
                prop_assert_eq!(
                    t.fail(&lease, &failure, retry_at).await.unwrap(),
                    expected,
                    "fail {:?}",
                    lease
                );
                let after = now_ms();
                if let Some(m) = model.current(&lease) {
                    m.state = if *retry {
                        State::Pending
                    } else {
                        State::Failed
                    };
                    m.due = (before, after);
                }
            }
            Op::Release(index) => {
                let Some(lease) = pick(&leases, index) else {
                    continue;
                };
                let expected = model.current(&lease).is_some();
                let before = now_ms();
                prop_assert_eq!(
                    t.release(&lease, "bye").await.unwrap(),
                    expected,
                    "release {:?}",
                    lease
                );
                let after = now_ms();
                if let Some(m) = model.current(&lease) {
                    (m.state, m.attempts, m.due) =
                        (State::Pending, m.attempts - 1, (before, after));
                }
            }
            Op::RetryFailedAll => {
                let expected = model.count(State::Failed);
                let before = now_ms();
                prop_assert_eq!(t.retry_failed(&Selector::All).await.unwrap(), expected);
                let after = now_ms();
                for m in model
                    .tasks
                    .values_mut()
                    .filter(|m| m.state == State::Failed)
                {
                    (m.state, m.attempts, m.due) = (State::Pending, 0, (before, after));
                }
            }
            Op::PurgeFailed => {
                let failed = model.ids(State::Failed);
                prop_assert_eq!(
                    t.purge(QUEUE, PurgeWhich::Failed).await.unwrap(),
                    failed.len() as u64
                );
                for id in failed {
                    model.tasks.remove(&id);
                    model.purged.insert(id);
                }
            }
        }

        let counts = t.counts(QUEUE).await.unwrap();
        let expected = QueueCounts {
            ready: model.count(State::Pending),
            running: model.count(State::Running),
            failed: model.count(State::Failed),
            ..QueueCounts::default()
        };
        prop_assert_eq!(counts, expected, "counts after step {} ({:?})", step, op);
        let failed: Vec<_> = t
            .failed(Some(QUEUE))
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        prop_assert_eq!(
            failed,
            model.ids(State::Failed),
            "failed tasks after step {}",
            step
        );
        let running: Vec<_> = t
            .owned_by(OWNER)
            .await
            .unwrap()
            .into_iter()
            .map(|task| task.id)
            .collect();
        prop_assert_eq!(
            running,
            model.ids(State::Running),
            "running tasks after step {}",
            step
        );
        // Nothing lost: every submitted task is in exactly one place.
        for id in &model.submitted {
            let places = [
                model.tasks.contains_key(id),
                model.completed.contains(id),
                model.purged.contains(id),
            ];
            prop_assert_eq!(
                places.iter().filter(|&&p| p).count(),
                1,
                "task {} is in one place",
                id
            );
        }
        let accounted = counts.ready + counts.running + counts.failed;
        prop_assert_eq!(
            accounted as usize + model.completed.len() + model.purged.len(),
            model.submitted.len()
        );
    }
    Ok(())
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_follows_the_model(ops in prop::collection::vec(op(), 1..=40)) {
        let dir = tempfile::tempdir().unwrap();
        let t = SqliteTransport::open(dir.path().join("rex.sqlite3")).unwrap();
        block_on(run(&t, &ops))?;
    }

    #[test]
    fn memory_follows_the_model(ops in prop::collection::vec(op(), 1..=40)) {
        let t: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
        block_on(run(t.as_ref(), &ops))?;
    }
}
