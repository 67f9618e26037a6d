//! Random operation sequences against the transports and a tiny model of the contract. After
//! every step the counts, the failed and running tasks agree with the model, and no task is
//! ever lost: each submitted task is pending, running, failed, completed or purged. Batches
//! (`submit_batch`, `claim_batch`, `settle_and_claim` with stale and repeated leases) are
//! steps like the others. SQLite and memory always run; PostgreSQL and Redis when their
//! `REX_TEST_*` server is set (fewer cases: each opens a fresh schema or key prefix).

#[allow(dead_code)] // the TLS helpers are for the server test files
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::sample::Index;
use rex_transport::memory::MemoryTransport;
use rex_transport::sqlite::SqliteTransport;
use rex_transport::{
    Failure, Lease, Payload, PurgeWhich, QueueCounts, Selector, Settlement, Submit, SubmitOptions,
    TaskId, Transport,
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
    /// `submit_batch` of this many tasks.
    SubmitBatch(usize),
    /// `claim_batch` with this window.
    ClaimBatch(usize),
    /// `settle_and_claim` of these settlements (stale and repeated leases included), then a
    /// claim with this window (0: settle only).
    SettleAndClaim(Vec<(Index, Kind)>, usize),
}

/// One settlement of a batch.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Complete,
    Fail { retry: bool, crash: bool },
    Release,
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
        1 => (0usize..4).prop_map(Op::SubmitBatch),
        2 => (1usize..5).prop_map(Op::ClaimBatch),
        2 => (prop::collection::vec((any::<Index>(), kind()), 0..5), 0usize..4)
            .prop_map(|(batch, window)| Op::SettleAndClaim(batch, window)),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Complete),
        2 => (any::<bool>(), any::<bool>()).prop_map(|(retry, crash)| Kind::Fail { retry, crash }),
        1 => Just(Kind::Release),
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

/// Check a batch of `claimed` tasks (from a window of `window`) against the model and record
/// their leases: as many as are ready, up to the window, each a pending task in claim order.
///
/// `may_skip` are tasks that the same call made ready (`settle_and_claim`): the contract lets
/// its claim leave them to the next one (PostgreSQL's single statement does not see them).
fn claimed_batch(
    model: &mut Model,
    leases: &mut Vec<Lease>,
    claimed: Vec<rex_transport::Task>,
    window: usize,
    may_skip: &BTreeSet<TaskId>,
) -> Result<(), TestCaseError> {
    let pending = model.ids(State::Pending);
    let window = window.max(1);
    let surely_ready = pending.iter().filter(|id| !may_skip.contains(id)).count();
    prop_assert!(
        (surely_ready.min(window)..=pending.len().min(window)).contains(&claimed.len()),
        "a full window when ready: claimed {} of {} pending ({} surely ready), window {}",
        claimed.len(),
        pending.len(),
        surely_ready,
        window
    );
    let ids: BTreeSet<TaskId> = claimed.iter().map(|task| task.id).collect();
    prop_assert_eq!(ids.len(), claimed.len(), "no task twice in a batch");
    for task in &claimed {
        prop_assert!(pending.contains(&task.id), "claimed a pending task");
        // Nothing left behind may come before a claimed task.
        let earlier = model
            .surely_before(task.id)
            .filter(|id| !ids.contains(id) && !may_skip.contains(id));
        prop_assert_eq!(earlier, None, "claim order: due time, then id");
    }
    for pair in claimed.windows(2) {
        let earlier = model.surely_before(pair[0].id);
        prop_assert!(earlier != Some(pair[1].id), "a batch is in claim order");
    }
    for task in claimed {
        let m = model.tasks.get_mut(&task.id).unwrap();
        // Every claim has a new, greater token (Redis draws them from one counter).
        prop_assert!(task.lease_token > m.token, "a new lease token");
        (m.state, m.token, m.attempts) = (State::Running, task.lease_token, m.attempts + 1);
        prop_assert_eq!(task.attempt, m.attempts);
        leases.push(task.lease());
    }
    Ok(())
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
                    // Every claim has a new, greater token (Redis draws them from one counter).
                    prop_assert!(task.lease_token > m.token, "a new lease token");
                    (m.state, m.token, m.attempts) =
                        (State::Running, task.lease_token, m.attempts + 1);
                    prop_assert_eq!(task.attempt, m.attempts);
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
                prop_assert_eq!(
                    t.release(&lease, "bye").await.unwrap(),
                    expected,
                    "release {:?}",
                    lease
                );
                // A released task keeps its due time (it was due when claimed).
                if let Some(m) = model.current(&lease) {
                    (m.state, m.attempts) = (State::Pending, m.attempts - 1);
                }
            }
            Op::RetryFailedAll => {
                let mut expected = model.ids(State::Failed);
                expected.sort_unstable();
                let before = now_ms();
                let mut moved: Vec<TaskId> = (t.retry_failed(&Selector::All).await.unwrap())
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                moved.sort_unstable();
                prop_assert_eq!(moved, expected);
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
            Op::SubmitBatch(n) => {
                let before = now_ms();
                let batch: Vec<Submit> = (0..*n)
                    .map(|_| Submit {
                        queue: QUEUE.into(),
                        payload: Payload::new(),
                    })
                    .collect();
                let ids = t.submit_batch(&batch, None).await.unwrap();
                prop_assert_eq!(ids.len(), *n, "an id per task");
                prop_assert!(
                    ids.windows(2).all(|w| w[0] < w[1]),
                    "ids in the order given"
                );
                for id in ids {
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
            }
            Op::ClaimBatch(window) => {
                let claimed = t
                    .claim_batch(QUEUE, OWNER, Duration::from_secs(600), *window)
                    .await
                    .unwrap();
                claimed_batch(&mut model, &mut leases, claimed, *window, &BTreeSet::new())?;
            }
            Op::SettleAndClaim(picks, window) => {
                if leases.is_empty() && !picks.is_empty() {
                    continue;
                }
                let batch: Vec<Settlement> = picks
                    .iter()
                    .map(|(index, kind)| {
                        let lease = leases[index.index(leases.len())];
                        match *kind {
                            Kind::Complete => Settlement::Complete {
                                lease,
                                submits: vec![],
                                result: None,
                            },
                            Kind::Fail { retry, crash } => Settlement::Fail {
                                lease,
                                failure: if crash {
                                    Failure::crash("crashed")
                                } else {
                                    Failure::error("Oops!")
                                },
                                retry_at: retry.then(SystemTime::now),
                            },
                            Kind::Release => Settlement::Release {
                                lease,
                                reason: "bye".into(),
                            },
                        }
                    })
                    .collect();
                let before = now_ms();
                let (applied, claimed) = t
                    .settle_and_claim(&batch, QUEUE, OWNER, Duration::from_secs(600), *window)
                    .await
                    .unwrap();
                let after = now_ms();
                // The model applies the batch in order: each settlement by its own token.
                let mut expected = Vec::new();
                let mut readied = BTreeSet::new();
                for settlement in &batch {
                    let lease = *settlement.lease();
                    let Some(m) = model.current(&lease) else {
                        expected.push(false);
                        continue;
                    };
                    expected.push(true);
                    match settlement {
                        Settlement::Complete { .. } => {
                            model.tasks.remove(&lease.id);
                            model.completed.insert(lease.id);
                        }
                        Settlement::Fail { retry_at, .. } => {
                            m.state = if retry_at.is_some() {
                                readied.insert(lease.id);
                                State::Pending
                            } else {
                                State::Failed
                            };
                            m.due = (before, after);
                        }
                        Settlement::Release { .. } => {
                            readied.insert(lease.id);
                            (m.state, m.attempts) = (State::Pending, m.attempts - 1);
                        }
                    }
                }
                prop_assert_eq!(applied, expected, "settled {:?}", batch);
                if *window == 0 {
                    prop_assert!(claimed.is_empty(), "a window of 0 claims nothing");
                } else {
                    claimed_batch(&mut model, &mut leases, claimed, *window, &readied)?;
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

/// The transport of the server named by `var`, isolated under `param` = a fresh name.
#[cfg(any(feature = "pgsql", feature = "redis"))]
fn on_server(var: &str, param: &str) -> Option<Arc<dyn Transport>> {
    let uri = common::server(var)?;
    let uri = common::with_param(&uri, param, &common::unique_prefix());
    Some(rex_transport::open(&uri).unwrap())
}

#[cfg(any(feature = "pgsql", feature = "redis"))]
proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[cfg(feature = "pgsql")]
    #[test]
    fn pgsql_follows_the_model(ops in prop::collection::vec(op(), 1..=40)) {
        if let Some(t) = on_server("REX_TEST_PGSQL", "schema") {
            block_on(run(t.as_ref(), &ops))?;
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_follows_the_model(ops in prop::collection::vec(op(), 1..=40)) {
        if let Some(t) = on_server("REX_TEST_REDIS", "key_prefix") {
            block_on(run(t.as_ref(), &ops))?;
        }
    }
}
