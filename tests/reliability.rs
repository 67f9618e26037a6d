//! End-to-end reliability: real master and worker processes, real signals, the SQLite
//! transport. Every wait is for a line of output or a process exit, never a sleep.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rex_tests::{Project, Running, children_of};

const LIMIT: Duration = Duration::from_secs(60);

fn workers(project: &Project, queues: &str) -> Running {
    let set = format!("--set=asynctask_workers={queues}");
    Running::spawn(project.rex(&["asynctask-workers", "--halt-when-empty", &set]))
}

/// Start the master, wait until its only child has taken the payload, and SIGKILL that child.
fn kill_child_mid_task(project: &Project, queues: &str) -> Running {
    let mut master = workers(project, queues);
    master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
    let children = children_of(master.pid());
    assert_eq!(
        children.len(),
        1,
        "expected one worker child, found {children:?}"
    );
    kill(Pid::from_raw(children[0]), Signal::SIGKILL).expect("kill child");
    master
}

#[test]
fn a_child_killed_mid_task_leaves_the_task_failed_with_the_signal() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 600000}"#, r#"{"ms": 0}"#]);
    let master = kill_child_mid_task(&project, r#"{"foo": null, "slow": "demo_sleep_worker"}"#);
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("ERROR:AsyncTaskWorkerTask:Worker for queue slow died; restarting..."),
        "{output}"
    );
    assert!(
        output.contains(r#"SLEEP processed: {"ms":0}"#),
        "the next task runs in the new child:\n{output}"
    );

    let failed = project.failed("slow");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["payload"], serde_json::json!({"ms": 600000}));
    assert_eq!(failed[0]["last_error"], "killed by SIGKILL");
    assert_eq!(failed[0]["crashes"], 1);
    assert_eq!(project.counts("slow"), (0, 0, 1));
}

#[test]
fn a_child_killed_mid_task_is_retried_when_attempts_remain() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 1500}"#]);
    let queues = r#"{"foo": null, "slow": {"worker": "demo_sleep_worker", "max_attempts": 3, "retry_delay_min": "10ms", "retry_delay_max": "20ms"}}"#;
    let master = kill_child_mid_task(&project, queues);
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("ERROR:AsyncTaskWorkerTask:Worker for queue slow died; restarting..."),
        "{output}"
    );
    assert_eq!(
        output.matches(r#"SLEEP processed: {"ms":1500}"#).count(),
        1,
        "{output}"
    );
    assert!(project.failed("slow").is_empty());
    assert_eq!(project.counts("slow"), (0, 0, 0));
}

#[test]
fn an_aborting_payload_is_failed_and_the_queue_goes_on() {
    let project = Project::demo();
    project.submit("boom", &[r#"{"abort": true}"#, r#"{"abort": false}"#]);
    let master = workers(&project, r#"{"foo": null, "boom": "demo_abort_worker"}"#);
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains(r#"ABORT processed: {"abort":false}"#),
        "{output}"
    );
    let failed = project.failed("boom");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["last_error"], "killed by SIGABRT");
}

fn worker_lines(lines: &[String], prefix: &str) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

#[test]
fn warm_shutdown_finishes_the_payload_in_hand() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 500}"#]);
    let mut master = Running::spawn(project.rex(&[
        "asynctask-workers",
        r#"--set=asynctask_workers={"foo": null, "slow": "demo_sleep_worker"}"#,
    ]));
    master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
    kill(Pid::from_raw(master.pid()), Signal::SIGTERM).expect("SIGTERM master");
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    // Log records (stderr) in order; the worker's print comes through stdout, a separate pipe here.
    let tail: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| {
            l.contains(':')
                && l.split(':')
                    .next()
                    .is_some_and(|level| level.chars().all(|c| c.is_ascii_uppercase()))
        })
        .skip_while(|l| !l.starts_with("DEBUG:AsyncTaskWorkerTask:Termination received"))
        .collect();
    assert_eq!(
        tail,
        [
            "DEBUG:AsyncTaskWorkerTask:Termination received; shutting down children",
            "DEBUG:SleepWorker:Processing complete",
            "INFO:SleepWorker:Terminating",
            "DEBUG:AsyncTaskWorkerTask:Children dead",
            "INFO:AsyncTaskWorkerTask:Complete",
        ],
        "{output}"
    );
    assert!(
        lines.iter().any(|l| l == r#"SLEEP processed: {"ms":500}"#),
        "{output}"
    );
    assert_eq!(project.counts("slow"), (0, 0, 0));
}

#[test]
fn grace_expiry_kills_the_child_and_releases_its_task_untouched() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 600000}"#]);
    let mut master = Running::spawn(project.rex(&[
        "asynctask-workers",
        r#"--set=asynctask_workers={"foo": null, "slow": {"worker": "demo_sleep_worker", "max_attempts": 2}}"#,
        "--set=asynctask_workers_shutdown_grace=100ms",
    ]));
    master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
    let child = children_of(master.pid());
    kill(Pid::from_raw(master.pid()), Signal::SIGTERM).expect("SIGTERM master");
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(rex_cli_exit_killed()), "{output}");
    assert!(output.contains("WARNING:AsyncTaskWorkerTask:Killing 1 worker (shutdown grace period expired); their tasks are released"), "{output}");
    assert!(
        output.contains("INFO:AsyncTaskWorkerTask:Released task"),
        "{output}"
    );
    assert!(child.iter().all(|&c| rex_tests::wait_gone(c, LIMIT)));
    // Back to pending, no attempt used: the next run starts it as attempt 1 of 2 again.
    assert_eq!(project.counts("slow"), (1, 0, 0));
    assert!(project.failed("slow").is_empty());
}

/// The documented exit status of a master that had to kill children at shutdown.
fn rex_cli_exit_killed() -> i32 {
    3
}

#[test]
fn a_killed_master_takes_its_children_along_and_the_next_master_reclaims_the_task() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 300}"#]);
    let queues = r#"{"foo": null, "slow": "demo_sleep_worker"}"#;
    let mut master = workers(&project, queues);
    master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
    let children = children_of(master.pid());
    assert_eq!(children.len(), 1);
    kill(Pid::from_raw(master.pid()), Signal::SIGKILL).expect("SIGKILL master");
    let _ = master.child.wait();
    // PR_SET_PDEATHSIG: the child dies with its master.
    assert!(
        rex_tests::wait_gone(children[0], Duration::from_secs(5)),
        "worker {} outlived its master",
        children[0]
    );
    assert_eq!(
        project.counts("slow"),
        (0, 1, 0),
        "the task is still leased to the dead master"
    );

    let (code, lines) = workers(&project, queues).finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("WARNING:AsyncTaskWorkerTask:Reclaimed task"),
        "{output}"
    );
    assert!(
        output.contains(r#"SLEEP processed: {"ms":300}"#),
        "{output}"
    );
    assert_eq!(project.counts("slow"), (0, 0, 0));
}

#[test]
fn a_hung_payload_is_killed_at_its_timeout_and_the_queue_goes_on() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 600000}"#, r#"{"ms": 0}"#]);
    let (code, lines) = workers(
        &project,
        r#"{"foo": null, "slow": {"worker": "demo_sleep_worker", "timeout": "200ms"}}"#,
    )
    .finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("exceeded its timeout of 200ms; killing its worker"),
        "{output}"
    );
    assert!(output.contains(r#"SLEEP processed: {"ms":0}"#), "{output}");
    let failed = project.failed("slow");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["last_error"], "timeout after 200ms");
}

#[test]
fn a_worker_that_cannot_start_is_restarted_with_growing_delays() {
    let project = Project::demo();
    let mut master = workers(
        &project,
        r#"{"foo": null, "mail": "demo_unstartable_worker"}"#,
    );
    let mut delays = Vec::new();
    while delays.len() < 4 {
        let line = master.wait_for(LIMIT, |l| {
            l.contains("keeps dying without processing anything")
        });
        let secs = line
            .rsplit("next start in ")
            .next()
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse::<f64>().ok());
        delays.push(secs.expect("a delay in the backoff line"));
    }
    kill(Pid::from_raw(master.pid()), Signal::SIGTERM).expect("SIGTERM master");
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("cannot connect to the mail server"),
        "the child's start-up error is shown:\n{output}"
    );
    assert!(delays.windows(2).all(|w| w[1] > w[0]), "{delays:?}");
    // First restart at once, then 0.5 s doubling (with jitter): at most 10 starts in 30 s.
    let launches = output.matches("Launching demo_unstartable_worker").count();
    assert_eq!(launches, 5, "{output}");
}

#[test]
fn chaos_random_sigkills_lose_no_task() {
    const TASKS: u64 = 2000;
    let project = Project::demo();
    let payloads: Vec<String> = (0..TASKS)
        .map(|n| format!(r#"{{"ms": {}, "n": {n}}}"#, 1 + n % 5))
        .collect();
    project.submit(
        "chaos",
        &payloads.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let queues = r#"{"foo": null, "chaos": {"worker": "demo_sleep_worker", "concurrency": 2, "max_attempts": 3, "retry_delay_min": "10ms", "retry_delay_max": "50ms"}}"#;
    let mut master = Running::spawn(project.rex(&[
        "asynctask-workers",
        "--halt-when-empty",
        "--set=log_level=INFO",
        &format!("--set=asynctask_workers={queues}"),
    ]));
    let mut kills = 0;
    while master.child.try_wait().expect("try_wait").is_none() {
        // Pacing of the chaos, not synchronisation: whatever the timing, nothing may be lost.
        std::thread::sleep(Duration::from_millis(100));
        let children = children_of(master.pid());
        if !children.is_empty()
            && kill(
                Pid::from_raw(children[fastrand::usize(..children.len())]),
                Signal::SIGKILL,
            )
            .is_ok()
        {
            kills += 1;
        }
    }
    let (code, lines) = master.finish(LIMIT);
    assert_eq!(code, Some(0), "{}", lines.join("\n"));

    let runs: Vec<u64> = worker_lines(&lines, "SLEEP processed: ")
        .iter()
        .filter_map(|p| p["n"].as_u64())
        .collect();
    let processed: std::collections::BTreeSet<u64> = runs.iter().copied().collect();
    let failed = project.failed("chaos");
    let failed_ids: std::collections::BTreeSet<u64> = failed
        .iter()
        .filter_map(|t| t["payload"]["n"].as_u64())
        .collect();
    assert!(
        failed
            .iter()
            .all(|t| t["last_error"].as_str().is_some_and(|e| !e.is_empty())),
        "{failed:?}"
    );
    let lost: Vec<u64> = (0..TASKS)
        .filter(|n| !processed.contains(n) && !failed_ids.contains(n))
        .collect();
    let (pending, running, _) = project.counts("chaos");
    eprintln!(
        "chaos: {TASKS} tasks, {kills} SIGKILLs, {} processed ({} runs, {} repeated), {} failed, {} lost",
        processed.len(),
        runs.len(),
        runs.len() - processed.len(),
        failed_ids.len(),
        lost.len()
    );
    assert!(kills > 0, "the test killed nothing");
    assert_eq!((pending, running), (0, 0));
    assert!(lost.is_empty(), "lost tasks: {lost:?}");
}

/// The master's loop never waits on the transport: while another process holds the SQLite
/// database locked, a child's death, SIGUSR1 and SIGTERM are all answered, and the dead child's
/// task is settled (nothing lost) once the lock goes away. The old loop settled inline and sat
/// in the busy timeout (30 s) before it logged the death, then gave up on the settlement.
#[test]
fn the_master_answers_while_another_process_locks_the_database() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 600000}"#]);
    let mut master = workers(&project, r#"{"foo": null, "slow": "demo_sleep_worker"}"#);
    master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
    let children = children_of(master.pid());
    assert_eq!(children.len(), 1, "{children:?}");
    let master_pid = Pid::from_raw(master.pid());

    let lock = rusqlite::Connection::open(project.path().join(".rex/asynctask.db"))
        .expect("open the database");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the database");
    kill(Pid::from_raw(children[0]), Signal::SIGKILL).expect("kill child");
    master.wait_for(LIMIT, |l| {
        l == "ERROR:AsyncTaskWorkerTask:Worker for queue slow died; restarting..."
    });
    kill(master_pid, Signal::SIGUSR1).expect("SIGUSR1");
    master.wait_for(LIMIT, |l| {
        l.starts_with("INFO:AsyncTaskWorkerTask:Worker for queue slow: ")
    });
    kill(master_pid, Signal::SIGTERM).expect("SIGTERM");
    master.wait_for(LIMIT, |l| {
        l.contains("Termination received; shutting down children")
    });
    let so_far = master.seen.join("\n");
    assert!(
        !so_far.contains("Cannot settle"),
        "the master waited for the lock:\n{so_far}"
    );
    lock.execute_batch("ROLLBACK").expect("unlock the database");

    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    let failed = project.failed("slow");
    assert_eq!(failed.len(), 1, "{output}\n{failed:?}");
    assert_eq!(failed[0]["last_error"], "killed by SIGKILL", "{output}");
    assert_eq!(project.counts("slow"), (0, 0, 1));
}

#[test]
fn sigusr1_reports_each_child_and_a_second_sigint_shuts_down_at_once() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 600000}"#]);
    let mut master = Running::spawn(project.rex(&[
        "asynctask-workers",
        r#"--set=asynctask_workers={"foo": null, "slow": "demo_sleep_worker"}"#,
    ]));
    master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
    let master_pid = Pid::from_raw(master.pid());
    // The child reports its claim before logging "Got payload", but that report may still be
    // in flight to the master: ask again until the status shows it (each round awaits a reply).
    let mut status = String::new();
    for _ in 0..50 {
        kill(master_pid, Signal::SIGUSR1).expect("SIGUSR1");
        status = master.wait_for(LIMIT, |l| {
            l.starts_with("INFO:AsyncTaskWorkerTask:Worker for queue slow: pid ")
        });
        if status.contains(", state processing, task ") {
            break;
        }
    }
    assert!(
        status.contains(", state processing, task ") && status.contains(", processed 0, uptime "),
        "{status}"
    );

    // Ctrl-C once: warm shutdown waits for the 10-minute payload; twice: cold shutdown.
    kill(master_pid, Signal::SIGINT).expect("SIGINT");
    master.wait_for(LIMIT, |l| {
        l.contains("Termination received; shutting down children")
    });
    kill(master_pid, Signal::SIGINT).expect("second SIGINT");
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(rex_cli_exit_killed()), "{output}");
    assert!(
        output.contains("Killing 1 worker (second interrupt); their tasks are released"),
        "{output}"
    );
    assert_eq!(project.counts("slow"), (1, 0, 0), "released, not failed");
}
