//! The SQLite database on a small filesystem that fills up while workers run: submitting
//! fails with one clear error, the running workers back off without failing, re-running or
//! losing a task and without flooding the log, and everything completes once space returns.
//!
//! The filesystem is a size-limited tmpfs the test mounts, which needs root (as CI runs);
//! elsewhere the test says it did not run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rex_tests::networked::runs;
use rex_tests::{Project, Running};

const LIMIT: Duration = Duration::from_secs(120);
const TASKS: u64 = 100;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // The last partial chunk.
        while file.write_all(&chunk[..512]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_stalls_the_workers_without_losing_failing_or_rerunning_a_task() {
    let Some(disk) = SmallDisk::mount("8m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs (run as root)"
        );
        eprintln!("full_disk: NOT RUN (mounting a tmpfs needs root)");
        return;
    };
    let db = disk.path().join("tasks.db");
    let uri = format!("sqlite://{}", db.display());
    let project = Project::new(&format!(
        "project: rex.asynctask_demo\nparameters:\n  asynctask_transport: {uri}\n"
    ));
    rex_tests::networked::submit_numbered(&project, &uri, "slow", TASKS, |_| 20);

    let mut master = Running::spawn(project.rex(&[
        "asynctask-workers",
        "--halt-when-empty",
        "--set=asynctask_workers={\"foo\": null, \"slow\": \"demo_sleep_worker\"}",
    ]));
    master.wait_for(LIMIT, |l| l.starts_with("SLEEP processed: "));
    let filler = disk.fill();
    master.wait_for(LIMIT, |l| l.contains("Transport error: "));

    // Submitting on the full disk: one clear error, nothing half-written.
    let (code, out, err) = project.run(&["asynctask-submit", "slow", r#"{"ms": 0}"#]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.starts_with("FATAL ERROR: SQLite"), "{err}");
    assert_eq!(err.matches("FATAL ERROR").count(), 1, "{err}");

    // Space returns: the workers resume by themselves and finish.
    std::fs::remove_file(filler).expect("remove filler");
    let (code, lines) = master.finish(LIMIT);
    let output = lines.join("\n");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("Transport available again after"),
        "{output}"
    );
    let reports = lines
        .iter()
        .filter(|l| l.contains("Transport error: ") || l.contains("Transport still failing"))
        .count();
    assert!(reports <= 4, "{reports} lines about the outage:\n{output}");
    assert!(
        !output.contains("An unhandled exception occurred"),
        "a transport error was charged to a payload:\n{output}"
    );

    let runs = runs(&lines);
    assert_eq!(runs.len() as u64, TASKS, "lost tasks:\n{output}");
    assert!(
        runs.values().all(|n| *n == 1),
        "tasks ran more than once: {runs:?}\n{output}"
    );
    assert_eq!(project.counts("slow"), (0, 0, 0), "{output}");

    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}
