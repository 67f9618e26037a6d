//! Shared helpers for the transcript and end-to-end tests.
//!
//! The tests drive the real `rex` binary and the real demo plugin (`librex_asynctask_demo.so`)
//! built by the workspace. [`artifacts`] makes sure they are built (a no-op under
//! `cargo test --workspace`, which has built them already) and says where they are.

pub mod browser;
pub mod console;
pub mod networked;
pub mod proxy;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the built binary and plugins are.
pub struct Artifacts {
    /// `target/<profile>/rex`.
    pub rex: PathBuf,
    /// Directory holding `librex_*.so`.
    pub plugin_dir: PathBuf,
}

/// Build (once per test process) and locate the `rex` binary and the plugin libraries.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        // Test binaries live in target/<profile>/deps; the binary and the cdylibs one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        // `cargo test` builds the cdylibs but only `cargo build` names them plainly next to the
        // binary; this is quick when everything is up to date.
        let mut build = Command::new(cargo);
        build.current_dir(&workspace).args([
            "build",
            "--quiet",
            "-p",
            "rex-cli",
            "-p",
            "rex_asynctask_demo",
            "-p",
            "rex_bad_abi",
            "-p",
            "rex_crash_on_load",
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of rex and the test plugins failed"
        );
        Artifacts {
            rex: profile_dir.join("rex"),
            plugin_dir: profile_dir,
        }
    })
}

/// A temporary project directory with a `rex.yaml`, and commands run inside it.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project whose `rex.yaml` is `rex_yaml`.
    pub fn new(rex_yaml: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("rex.yaml"), rex_yaml).expect("write rex.yaml");
        Project { dir }
    }

    /// The demo project.
    pub fn demo() -> Project {
        Project::new("project: rex.asynctask_demo\n")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rex <args>` in this project, with the test plugins on the search path.
    pub fn rex(&self, args: &[&str]) -> Command {
        let a = artifacts();
        let mut cmd = Command::new(&a.rex);
        cmd.args(args)
            .current_dir(self.path())
            .env("REX_PLUGIN_PATH", &a.plugin_dir)
            .env_remove("REX_PROJECT")
            .env_remove("REX_PARAMETERS");
        cmd
    }

    /// Run `rex <args>` to completion; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .rex(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rex");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// Run `rex <args>` and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "rex {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Submit tasks (one JSON object each) to `queue`.
    pub fn submit(&self, queue: &str, payloads: &[&str]) {
        let mut child = self
            .rex(&["asynctask-submit", queue, "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn submit");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            for p in payloads {
                writeln!(stdin, "{p}").expect("write payload");
            }
        }
        assert!(
            child.wait().expect("wait submit").success(),
            "asynctask-submit failed"
        );
    }

    /// `rex asynctask-queues --json` for one queue: (pending, running, failed).
    pub fn counts(&self, queue: &str) -> (u64, u64, u64) {
        let out = self.ok(&["asynctask-queues", "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&out).expect("queues json");
        let row = rows
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["queue"] == queue));
        match row {
            Some(r) => (
                r["pending"].as_u64().unwrap_or(0),
                r["running"].as_u64().unwrap_or(0),
                r["failed"].as_u64().unwrap_or(0),
            ),
            None => (0, 0, 0),
        }
    }

    /// `rex asynctask-failed --json`.
    pub fn failed(&self, queue: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["asynctask-failed", "--queue", queue, "--json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .expect("failed json")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A running `rex` process whose merged output lines are collected as they arrive, so a test
/// can wait for a given line (a message, not a sleep) before acting.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    /// Spawn `cmd` with stdout and stderr captured line by line.
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rex");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait until a line satisfying `pred` arrives (or panic after `limit`); returns it.
    pub fn wait_for(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        match self.poll_for(limit, pred) {
            Some(line) => line,
            None => panic!(
                "timed out waiting for a line; output so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// [`wait_for`](Self::wait_for) that gives up after `limit` (or when the output ends)
    /// with `None`, for a test that watches several processes in turn.
    pub fn poll_for(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Collect the lines that arrive during `period` (a fault being held, not a wait for a
    /// condition); returns how many came.
    pub fn collect_for(&mut self, period: Duration) -> usize {
        let deadline = Instant::now() + period;
        let before = self.seen.len();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                // The process ended: nothing more can come.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    break;
                }
            }
        }
        self.seen.len() - before
    }

    /// Wait for the process to exit (or panic after `limit`); returns its exit code and every
    /// remaining line.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Drain what the reader threads still hold; they end at EOF, which disconnects
                // the channel.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(30)) {
                    self.seen.push(line);
                }
                return (status.code(), std::mem::take(&mut self.seen));
            }
            match self.lines.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => self.seen.push(line),
                Err(_) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!(
                        "process did not exit in time; output:\n{}",
                        self.seen.join("\n")
                    );
                }
                Err(_) => {}
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// A test that fails while a master runs must not leave it running: SIGKILL it (its workers
/// die with it, PR_SET_PDEATHSIG) and reap it.
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Pids of the live children of `parent` (from /proc), i.e. the worker processes of a master.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // fields[0] = state, fields[1] = ppid; zombies are already dead.
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent)
            && fields.first() != Some(&"Z")
        {
            pids.push(pid);
        }
    }
    pids
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').map(|i| &stat[i + 2..i + 3]) != Some("Z"),
        Err(_) => false,
    }
}

/// Wait until process `pid` (not necessarily our child) has exited, through a pidfd, which
/// becomes readable at its death. Returns false if it is still alive after `limit`.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return !alive(pid); // already gone (ESRCH)
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)), Ok(n) if n > 0)
        || !alive(pid)
}
