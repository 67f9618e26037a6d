//! `--scheduler` end to end: fires are counted, never timed. Each test waits for log lines
//! (messages), then stops the master with SIGTERM and compares counts.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rex_tests::console::Dashboard;
use rex_tests::{Project, Running};

const LIMIT: Duration = Duration::from_secs(60);
const TRIGGER: &str = "DEBUG:AsyncTaskWorkerTask:Triggering scheduled execution of ";
const DUPLICATE: &str = "was already enqueued by another scheduler";

fn scheduler(project: &Project, schedules: &str) -> Running {
    Running::spawn(project.rex(&[
        "asynctask-workers",
        "--scheduler",
        r#"--set=asynctask_workers={"foo": null}"#,
        &format!("--set=asynctask_scheduled_workers={schedules}"),
    ]))
}

fn stop(master: Running) -> Vec<String> {
    kill(Pid::from_raw(master.pid()), Signal::SIGTERM).expect("SIGTERM");
    let (code, lines) = master.finish(LIMIT);
    assert_eq!(code, Some(0), "{}", lines.join("\n"));
    lines
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn every_fire_of_a_worker_schedule_is_enqueued_and_processed() {
    let project = Project::demo();
    let mut master = scheduler(
        &project,
        r#"[{"worker": "demo_bar_worker", "second": "*"}]"#,
    );
    master.wait_for(LIMIT, |l| {
        l == r#"INFO:AsyncTaskWorkerTask:Scheduling "demo_bar_worker" for {"second":"*"}"#
    });
    for _ in 0..3 {
        master.wait_for(LIMIT, |l| l.starts_with(TRIGGER));
    }
    let lines = stop(master);
    let output = lines.join("\n");
    let fires = count(&lines, TRIGGER);
    assert!(fires >= 3, "{output}");
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with(TRIGGER) || l.ends_with("demo_bar_worker")),
        "{output}"
    );
    // Each fire is processed, or still queued if it came during shutdown.
    let processed = count(&lines, "BAR processed: {}");
    let (pending, running, failed) = project.counts("scheduled_0_demo_bar_worker");
    assert_eq!(processed as u64 + pending, fires as u64, "{output}");
    assert_eq!((running, failed), (0, 0));
    let tail: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("DEBUG:AsyncTaskWorkerTask:T") || l.contains("dead"))
        .rev()
        .take(3)
        .collect();
    assert!(
        tail.contains(&"DEBUG:AsyncTaskWorkerTask:Scheduler dead"),
        "{output}"
    );
}

#[test]
fn scheduled_ctl_commands_run_through_ctl_executor() {
    let project = Project::demo();
    let mut master = scheduler(
        &project,
        r#"[{"ctl": "demo-noisy-task", "second": "*"}, {"ctl": "demo-quiet-task", "second": "*"}, {"ctl": "demo-crashy-task", "second": "*"}]"#,
    );
    master.wait_for(LIMIT, |l| l == "INFO:CtlExecutorWorker:Hello world!");
    master.wait_for(LIMIT, |l| {
        l == "INFO:CtlExecutorWorker:Executing Task: demo-quiet-task"
    });
    master.wait_for(LIMIT, |l| l == "ERROR:CtlExecutorWorker:Failed execution");
    let lines = stop(master);
    let output = lines.join("\n");
    assert_eq!(
        count(
            &lines,
            "INFO:AsyncTaskWorkerTask:Launching ctl_executor to work on queue scheduled_0_ctl_"
        ),
        3,
        "{output}"
    );
    assert!(output.contains("Received unexpected exit code:\n    expected 0; got 1\nWith output:\n    FATAL ERROR: Oops, I crashed\nFrom:\n    rex demo-crashy-task"), "{output}");
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with(TRIGGER) || l.ends_with("ctl_executor")),
        "{output}"
    );
}

#[test]
fn two_schedulers_enqueue_each_fire_once() {
    let project = Project::demo();
    let schedules = r#"[{"worker": "demo_bar_worker", "second": "*"}]"#;
    let mut a = scheduler(&project, schedules);
    let mut b = scheduler(&project, schedules);
    // Let both attempt at least three fires while both run.
    for master in [&mut a, &mut b] {
        for _ in 0..3 {
            master.wait_for(LIMIT, |l| l.starts_with(TRIGGER) || l.contains(DUPLICATE));
        }
    }
    let (a, b) = (stop(a), stop(b));
    let attempts = |lines: &[String]| count(lines, TRIGGER) + count(lines, DUPLICATE);
    let enqueued = count(&a, TRIGGER) + count(&b, TRIGGER);
    let processed = count(&a, "BAR processed: {}") + count(&b, "BAR processed: {}");
    let (pending, running, _) = project.counts("scheduled_0_demo_bar_worker");
    eprintln!(
        "two schedulers: {} + {} attempts, {enqueued} enqueued, {processed} processed",
        attempts(&a),
        attempts(&b)
    );
    // Every enqueued fire ran (or waits), and no fire was enqueued by both: the enqueued total
    // is at most the fires seen by the scheduler that saw the most, plus edge fires seen only
    // by one of them while the other was starting or stopping.
    assert_eq!(processed as u64 + pending + running, enqueued as u64);
    let both = count(&a, DUPLICATE) + count(&b, DUPLICATE);
    assert!(
        both >= 2,
        "the schedulers did not overlap: {enqueued} enqueued, {both} duplicates"
    );
    assert_eq!(enqueued + both, attempts(&a) + attempts(&b));
    assert!(
        enqueued <= attempts(&a).max(attempts(&b)) + 2,
        "a fire was enqueued twice: {enqueued} enqueued"
    );
}

#[test]
fn run_once_misfire_catches_up_after_downtime() {
    let project = Project::demo();
    let schedules = r#"[{"worker": "demo_bar_worker", "second": "*", "misfire": "run_once"}]"#;
    let mut first = scheduler(&project, schedules);
    first.wait_for(LIMIT, |l| l.starts_with(TRIGGER));
    stop(first);
    // The downtime under test: long enough that at least one per-second fire is missed.
    std::thread::sleep(Duration::from_millis(1500));
    let mut second = scheduler(&project, schedules);
    let line = second.wait_for(LIMIT, |l| {
        l.contains("once for the fires missed since") || l.starts_with(TRIGGER)
    });
    assert!(
        line.contains(
            r#"INFO:AsyncTaskWorkerTask:Running "demo_bar_worker" once for the fires missed since"#
        ),
        "{line}"
    );
    second.wait_for(LIMIT, |l| l.starts_with(TRIGGER));
    stop(second);
}

#[test]
fn a_schedule_paused_in_the_console_is_skipped_until_it_is_resumed() {
    let project = Project::demo();
    let schedules = r#"[{"worker": "demo_bar_worker", "second": "*"}]"#;
    let set = format!("--set=asynctask_scheduled_workers={schedules}");
    let console = Dashboard::start(&project, &[&set]);
    let listed: serde_json::Value =
        serde_json::from_str(&console.get("/api/schedules")).expect("JSON");
    let id = listed["schedules"][0]["id"]
        .as_str()
        .expect("the schedule's id")
        .to_string();
    console.post(&format!("/api/schedules/{id}/pause"), "");

    let mut master = scheduler(&project, schedules);
    const SKIPPED: &str = "INFO:AsyncTaskWorkerTask:Skipping scheduled execution of demo_bar_worker: schedule \"demo_bar_worker\" is paused";
    for _ in 0..2 {
        master.wait_for(LIMIT, |l| l == SKIPPED);
    }
    assert_eq!(count(&master.seen, TRIGGER), 0, "{:?}", master.seen);
    console.post(&format!("/api/schedules/{id}/resume"), "");
    master.wait_for(LIMIT, |l| l.starts_with(TRIGGER));
    let lines = stop(master);
    let last_skip = lines.iter().rposition(|l| l == SKIPPED);
    let first_fire = lines.iter().position(|l| l.starts_with(TRIGGER));
    assert!(last_skip < first_fire, "{}", lines.join("\n"));
    let shown: serde_json::Value =
        serde_json::from_str(&console.get("/api/schedules")).expect("JSON");
    assert!(shown["schedules"][0]["last_fire_ms"].is_i64(), "{shown}");
}
