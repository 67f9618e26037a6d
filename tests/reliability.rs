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
