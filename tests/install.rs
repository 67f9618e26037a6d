//! How rex runs from where it is installed: each child is the `rex-worker` binary beside
//! `rex`; a `rex` alone runs its children as `rex __worker`; a `rex-worker` of another version
//! beside it is not used (the master says so and carries on).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rex_tests::{Project, Running, artifacts, children_of};

const LIMIT: Duration = Duration::from_secs(60);
const SLOW: &str = r#"--set=asynctask_workers={"foo": null, "slow": "demo_sleep_worker"}"#;

/// `rex` copied alone into a new directory (a copy: `/proc/self/exe` sees through links).
fn lone_rex() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rex = dir.path().join("rex");
    if std::fs::hard_link(&artifacts().rex, &rex).is_err() {
        std::fs::copy(&artifacts().rex, &rex).expect("copy rex");
    }
    (dir, rex)
}

/// `exe <args>` in `project`, as `Project::rex` runs the built `rex`.
fn run_with(exe: &Path, project: &Project, args: &[&str]) -> Running {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(project.path())
        .env("REX_PLUGIN_PATH", &artifacts().plugin_dir)
        .env_remove("REX_PROJECT")
        .env_remove("REX_PARAMETERS");
    Running::spawn(cmd)
}

/// The program the one child of `master` runs, once it has taken its (endless) task.
fn child_program(master: &mut Running) -> (PathBuf, String) {
    master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
    let children = children_of(master.pid());
    assert_eq!(children.len(), 1, "{children:?}");
    let exe = std::fs::read_link(format!("/proc/{}/exe", children[0])).expect("child exe");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", children[0])).expect("cmdline");
    (exe, String::from_utf8_lossy(&cmdline).replace('\0', " "))
}

#[test]
fn children_run_the_rex_worker_binary_beside_rex() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 600000}"#]);
    let mut master = Running::spawn(project.rex(&["asynctask-workers", SLOW]));
    let (exe, cmdline) = child_program(&mut master);
    assert_eq!(
        exe,
        artifacts().rex.with_file_name("rex-worker"),
        "{cmdline}"
    );
    assert!(!cmdline.contains("__worker"), "{cmdline}");
}

#[test]
fn a_lone_rex_runs_its_children_as_rex_worker_task() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 600000}"#]);
    let (_dir, rex) = lone_rex();
    let mut master = run_with(&rex, &project, &["asynctask-workers", SLOW]);
    let (exe, cmdline) = child_program(&mut master);
    assert_eq!(exe, rex, "{cmdline}");
    assert!(cmdline.ends_with("__worker "), "{cmdline}");
    assert!(
        !master.seen.iter().any(|l| l.contains("children run as")),
        "no rex-worker, nothing to warn about:\n{}",
        master.seen.join("\n")
    );
}

#[test]
fn a_rex_worker_of_another_version_is_not_used() {
    let project = Project::demo();
    project.submit("slow", &[r#"{"ms": 0}"#, r#"{"ms": 1}"#]);
    let (dir, rex) = lone_rex();
    let stale = dir.path().join("rex-worker");
    std::fs::write(&stale, "#!/bin/sh\necho rex-worker 0.0.0-old\n").expect("write");
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let master = run_with(
        &rex,
        &project,
        &["asynctask-workers", "--halt-when-empty", SLOW],
    );
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    let expected = format!(
        "WARNING:AsyncTaskWorkerTask:children run as rex __worker, not as {}: it is not \
         rex-worker {} (--version said \"rex-worker 0.0.0-old\")",
        stale.display(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(output.contains(&expected), "{output}");
    assert_eq!(output.matches("SLEEP processed").count(), 2, "{output}");
    assert_eq!(project.counts("slow"), (0, 0, 0));
}
