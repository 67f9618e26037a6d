//! The master's loop handlers driven with fake children: no processes, no signals. A test
//! plays the children's part (their control-socket reports, their beacons and their deaths) and checks what
//! the master does: relaunches, backoff, timeouts, shutdown, and what its ledger settles on an
//! in-process transport.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rex_transport::{Payload, SubmitOptions, Task, Transport};
use tokio::sync::mpsc;

use super::child::{Child, Event, EventKind, Launcher};
use super::death::DeathCause;
use super::ledger::Report;
use super::slots::{State, all_queues};
use super::{Options, Supervisor};
use crate::control::{HaltReason, Up, WorkerSpec};
use crate::project::{App, ProjectArgs, Requirement};

/// What the fake launcher was asked to start, in order.
type Launched = Arc<Mutex<Vec<(usize, u64, WorkerSpec)>>>;

struct FakeLauncher(Launched);

impl Launcher for FakeLauncher {
    fn launch(
        &mut self,
        slot: usize,
        generation: u64,
        spec: WorkerSpec,
        _events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Child> {
        let child = Child::detached(generation, spec.owner.clone());
        self.0
            .lock()
            .expect("launch log")
            .push((slot, generation, spec));
        Ok(child)
    }
}

struct Harness {
    master: Supervisor,
    launched: Launched,
    transport: Arc<dyn Transport>,
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    /// A master of the built-in `rex.asynctask` package with `asynctask_workers` = `workers`,
    /// on the in-process transport, every slot launched.
    fn new(workers: &str, options: Options) -> Harness {
        let args = ProjectArgs {
            project: Some("rex.asynctask".into()),
            sets: vec![
                format!("asynctask_workers={workers}"),
                "asynctask_transport=memory:".into(),
            ],
            ..ProjectArgs::default()
        };
        let need = Requirement {
            package: "rex.asynctask",
            fallback: None,
        };
        let app = App::build(&args, need).expect("the application");
        let mut master = Supervisor::new(app, args, options).expect("a master");
        let launched = Launched::default();
        master.launcher = Box::new(FakeLauncher(Arc::clone(&launched)));
        master.slots = master
            .slots_for(all_queues(&master.app.settings))
            .expect("slots");
        for index in 0..master.slots.len() {
            master.launch(index);
        }
        let transport = Arc::clone(&master.transport);
        let runtime = crate::runtime::current_thread().expect("runtime");
        Harness {
            master,
            launched,
            transport,
            runtime,
        }
    }

    fn launches(&self) -> usize {
        self.launched.lock().expect("launch log").len()
    }

    /// The owner name of the `n`th child started.
    fn owner(&self, n: usize) -> String {
        self.launched.lock().expect("launch log")[n].2.owner.clone()
    }

    fn child(&self, slot: usize) -> &Child {
        match &self.master.slots[slot].state {
            State::Running(child) => child,
            _ => panic!("slot {slot} has no running child"),
        }
    }

    fn generation(&self, slot: usize) -> u64 {
        self.child(slot).generation
    }

    /// The child of `slot` reports `up` on its control socket.
    fn report(&mut self, slot: usize, up: Up) {
        let generation = self.generation(slot);
        self.master.on_event(Event {
            slot,
            generation,
            kind: EventKind::Up(up),
        });
    }

    /// The child of `slot` dies.
    fn dies(&mut self, slot: usize, cause: DeathCause) {
        let generation = self.generation(slot);
        self.master.on_event(Event {
            slot,
            generation,
            kind: EventKind::Exited(cause),
        });
    }

    /// Submit a task to `queue` and claim it as the `n`th child started would.
    fn claimed_by(&self, queue: &str, n: usize) -> Task {
        self.batch_claimed_by(queue, n, 1).remove(0)
    }

    /// Submit `count` tasks to `queue` and claim them in one batch as the `n`th child would.
    fn batch_claimed_by(&self, queue: &str, n: usize, count: usize) -> Vec<Task> {
        let owner = self.owner(n);
        self.runtime.block_on(async {
            for _ in 0..count {
                self.transport
                    .submit(queue, Payload::default(), &SubmitOptions::default())
                    .await
                    .expect("submit");
            }
            let tasks = self
                .transport
                .claim_batch(queue, &owner, Duration::from_secs(60), count)
                .await
                .expect("claim");
            assert_eq!(tasks.len(), count);
            tasks
        })
    }

    /// The child of `slot` starts running `task` (it writes its beacon).
    fn starts(&self, slot: usize, task: &Task) {
        self.child(slot)
            .beacon()
            .start(task.id, task.lease_token, task.attempt);
    }

    /// The next report of the ledger (the loop would select on it).
    fn ledger_report(&mut self) -> Report {
        let reports = &mut self.master.reports;
        self.runtime
            .block_on(reports.recv())
            .expect("the ledger reports")
    }

    fn last_error(&self, queue: &str) -> Vec<Option<String>> {
        self.runtime
            .block_on(self.transport.failed(Some(queue)))
            .expect("failed")
            .into_iter()
            .map(|t| t.last_error)
            .collect()
    }
}

fn options() -> Options {
    Options {
        halt_when_empty: false,
        quiet: true,
        scheduler: false,
    }
}

#[test]
fn a_child_that_dies_holding_a_task_is_relaunched_at_once_and_the_task_charged() {
    let mut h = Harness::new(r#"{"jobs": "bench_worker"}"#, options());
    assert_eq!(h.launches(), 1);
    let task = h.claimed_by("jobs", 0);
    h.starts(0, &task);
    h.dies(0, DeathCause::Signaled(9));

    // Relaunched without waiting for the settlement.
    assert_eq!(h.launches(), 2);
    assert_eq!(h.generation(0), 2);
    assert_eq!(
        h.ledger_report(),
        Report::Settled {
            slot: 0,
            generation: 1,
            tasks: 1
        }
    );
    assert_eq!(h.last_error("jobs"), [Some("killed by SIGKILL".into())]);
}

#[test]
fn a_child_that_keeps_dying_without_progress_is_held_back() {
    let mut h = Harness::new(r#"{"jobs": "bench_worker"}"#, options());
    h.dies(0, DeathCause::Exited(1));
    assert_eq!(h.launches(), 2, "the first relaunch is immediate");
    h.dies(0, DeathCause::Exited(1));
    assert_eq!(h.launches(), 2, "the second waits");
    let State::Backoff(until) = h.master.slots[0].state else {
        panic!("expected a backoff");
    };
    assert!(until > Instant::now());
    assert_eq!(h.master.next_deadline(), until);
    // Neither death held a task: the ledger finds nothing, and the backoff stands.
    for _ in 0..2 {
        let Report::Settled { tasks, .. } = h.ledger_report();
        assert_eq!(tasks, 0);
    }
    h.master.on_settled(
        super::ledger::ChildRef {
            slot: 0,
            generation: 2,
        },
        0,
    );
    assert!(matches!(h.master.slots[0].state, State::Backoff(_)));
}

#[test]
fn only_the_running_task_of_a_batch_is_charged_the_rest_go_back_uncharged() {
    let mut h = Harness::new(r#"{"jobs": "bench_worker"}"#, options());
    let tasks = h.batch_claimed_by("jobs", 0, 21);
    // The first completed (not recorded yet), the second runs, 19 are prefetched.
    h.starts(0, &tasks[0]);
    h.child(0)
        .beacon()
        .finish(Some((tasks[0].id, tasks[0].lease_token)), finished());
    h.starts(0, &tasks[1]);
    h.dies(0, DeathCause::Signaled(9));
    assert_eq!(
        h.ledger_report(),
        Report::Settled {
            slot: 0,
            generation: 1,
            tasks: 1
        }
    );
    assert_eq!(h.last_error("jobs"), [Some("killed by SIGKILL".into())]);
    let counts = h
        .runtime
        .block_on(h.transport.counts("jobs"))
        .expect("counts");
    assert_eq!(
        (counts.ready, counts.running, counts.failed),
        (19, 0, 1),
        "the completed one is recorded, the 19 not started are back"
    );
    assert_eq!(h.master.slots[0].processed, 1, "the finished one counts");
    // The released tasks used no attempt: each is claimed as its first attempt again.
    let owner = h.owner(1);
    let again = h
        .runtime
        .block_on(
            h.transport
                .claim_batch("jobs", &owner, Duration::from_secs(60), 64),
        )
        .expect("claim");
    assert_eq!(again.len(), 19);
    assert!(again.iter().all(|t| t.attempt == 1 && t.crashes == 0));
}

#[test]
fn a_timeout_kill_for_a_task_that_ended_meanwhile_charges_no_one() {
    let mut h = Harness::new(
        r#"{"jobs": {"worker": "bench_worker", "timeout": "1s"}}"#,
        options(),
    );
    let tasks = h.batch_claimed_by("jobs", 0, 2);
    if let State::Running(child) = &mut h.master.slots[0].state {
        child.kill_reason = Some((
            DeathCause::Timeout(Duration::from_secs(1)),
            (tasks[0].id, tasks[0].lease_token),
        ));
    }
    h.starts(0, &tasks[1]);
    h.dies(0, DeathCause::Signaled(9));
    let Report::Settled { tasks: charged, .. } = h.ledger_report();
    assert_eq!(charged, 0);
    let counts = h
        .runtime
        .block_on(h.transport.counts("jobs"))
        .expect("counts");
    assert_eq!((counts.ready, counts.failed), (2, 0));
}

#[test]
fn a_task_past_its_timeout_gets_its_child_killed_and_the_timeout_recorded() {
    let mut h = Harness::new(
        r#"{"jobs": {"worker": "bench_worker", "timeout": "1s"}}"#,
        options(),
    );
    let task = h.claimed_by("jobs", 0);
    h.starts(0, &task);
    h.master.on_timers();
    assert_eq!(h.child(0).kill_reason, None, "not yet");
    let deadline = h.master.next_deadline();
    let started = h.child(0).current().expect("running").started;
    assert_eq!(
        deadline,
        started + Duration::from_secs(1),
        "exactly on time"
    );
    // The deadline passes (the loop sleeps until it; here the test moves the clock).
    h.master.on_timers_at(deadline);
    assert_eq!(
        h.child(0).kill_reason,
        Some((
            DeathCause::Timeout(Duration::from_secs(1)),
            (task.id, task.lease_token)
        ))
    );
    h.dies(0, DeathCause::Signaled(9));
    h.ledger_report();
    assert_eq!(h.last_error("jobs"), [Some("timeout after 1s".into())]);
}

#[test]
fn shutdown_asks_children_to_quit_and_releases_the_tasks_of_those_killed_at_grace_expiry() {
    let mut h = Harness::new(
        r#"{"jobs": "bench_worker", "other": "bench_worker"}"#,
        options(),
    );
    let task = h.claimed_by("jobs", 0);
    h.starts(0, &task);
    h.master.begin_shutdown();
    assert!(h.child(0).quit_sent() && h.child(1).quit_sent());

    // `other` stops in order; `jobs` is still busy when the grace period ends.
    h.report(
        1,
        Up::Halted {
            reason: HaltReason::Quit,
        },
    );
    h.dies(1, DeathCause::Exited(0));
    assert!(matches!(h.master.slots[1].state, State::Done));
    h.master.stopping = Some(Instant::now());
    h.master.on_timers();
    assert!(h.child(0).killed_by_shutdown && h.master.killed_children);
    h.dies(0, DeathCause::Signaled(9));
    assert!(matches!(h.master.slots[0].state, State::Done));
    assert_eq!(h.launches(), 2, "nothing relaunched during shutdown");

    h.runtime
        .block_on(h.master.ledger.finish(std::future::pending()));
    let counts = h
        .runtime
        .block_on(h.transport.counts("jobs"))
        .expect("counts");
    assert_eq!((counts.ready, counts.running, counts.failed), (1, 0, 0));
}

#[test]
fn halted_when_empty_is_not_relaunched() {
    let mut h = Harness::new(
        r#"{"jobs": "bench_worker"}"#,
        Options {
            halt_when_empty: true,
            ..options()
        },
    );
    h.report(
        0,
        Up::Halted {
            reason: HaltReason::Empty,
        },
    );
    h.dies(0, DeathCause::Exited(0));
    assert!(matches!(h.master.slots[0].state, State::Done));
    assert_eq!(h.launches(), 1);
}

/// A plain success of 2 ms, as a child's beacon records it.
fn finished() -> crate::beacon::Finished {
    crate::beacon::Finished {
        ended: crate::beacon::Ended::Succeeded,
        ran: Duration::from_millis(2),
        waited: Some(Duration::from_millis(5)),
    }
}

#[test]
fn what_children_tally_and_the_crashes_charged_add_up_in_the_heartbeat_and_the_history() {
    let mut h = Harness::new(r#"{"jobs": "bench_worker"}"#, options());
    let tasks = h.batch_claimed_by("jobs", 0, 3);
    for task in &tasks[..2] {
        h.starts(0, task);
        h.child(0).beacon().finish(None, finished());
    }
    h.master.beat();
    let totals = |h: &Harness| {
        let record = h.master.master_record(std::time::SystemTime::now());
        assert_eq!(record.totals.len(), 1);
        record.totals[0].counters
    };
    let seen = totals(&h);
    assert_eq!((seen.succeeded, seen.crashed), (2, 0));
    assert_eq!((seen.run.count(), seen.wait.count()), (2, 2));
    h.master.beat();
    assert_eq!(
        totals(&h),
        seen,
        "a second look at the same beacon adds nothing"
    );

    h.starts(0, &tasks[2]);
    h.dies(0, DeathCause::Signaled(9));
    h.ledger_report();
    let after = totals(&h);
    assert_eq!((after.succeeded, after.crashed), (2, 1));

    // A clean exit records what is left; the history then holds the whole minute.
    h.master.forget_heartbeat();
    h.runtime
        .block_on(h.master.ledger.finish(std::future::pending()));
    let rows = h
        .runtime
        .block_on(h.transport.history(Some("jobs"), 0))
        .expect("history");
    let mut recorded = rex_transport::Counters::default();
    for row in &rows {
        recorded.add(&row.counters);
    }
    assert_eq!(recorded, after);
}

#[test]
fn a_cancelled_running_task_gets_its_child_killed_and_is_recorded_as_cancelled() {
    let mut h = Harness::new(r#"{"jobs": "bench_worker"}"#, options());
    let task = h.claimed_by("jobs", 0);
    h.starts(0, &task);
    h.runtime
        .block_on(h.transport.request_cancel(task.id, task.attempt))
        .expect("request");
    // The first look reads the requests; the next acts on them.
    let read = h.master.act_on_cancels().expect("a child runs a task");
    h.runtime.block_on(read).expect("read");
    assert_eq!(
        h.child(0).kill_reason,
        None,
        "not before the requests were read"
    );
    drop(h.master.act_on_cancels());
    assert_eq!(
        h.child(0).kill_reason,
        Some((DeathCause::Cancelled, (task.id, task.lease_token)))
    );
    h.dies(0, DeathCause::Signaled(9));
    h.ledger_report();
    assert_eq!(h.launches(), 2, "relaunched");
    let kept = h
        .runtime
        .block_on(h.transport.task(task.id))
        .expect("task")
        .expect("kept");
    assert_eq!(
        (kept.state, kept.errors, kept.crashes),
        (rex_transport::TaskState::Failed, 0, 0),
        "never retried, not a crash"
    );
    let last = kept.history.last().expect("its attempt");
    assert_eq!(last.outcome, rex_transport::Outcome::Cancelled);
    assert_eq!(last.reason.as_deref(), Some("cancelled by an operator"));
}
