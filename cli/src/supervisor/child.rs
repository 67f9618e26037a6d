//! One worker child: spawning it, watching it, signalling its process group.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::Instant;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::death::DeathCause;
use crate::beacon::{BEACON_FD, Beacon, Running, Snapshot};
use crate::control::{self, CONTROL_FD, Down, HaltReason, Up, WorkerSpec};

/// Something that happened to the child of `slot` started as `generation`.
pub struct Event {
    pub slot: usize,
    pub generation: u64,
    pub kind: EventKind,
}

pub enum EventKind {
    Up(Up),
    Exited(DeathCause),
}

/// Starts children: real processes ([`Processes`]), or a fake in the supervisor's unit tests.
pub trait Launcher {
    fn launch(
        &mut self,
        slot: usize,
        generation: u64,
        spec: WorkerSpec,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Child>;
}

/// `rex-worker` (or `rex __worker`) processes.
pub struct Processes(pub crate::worker::Program);

impl Launcher for Processes {
    fn launch(
        &mut self,
        slot: usize,
        generation: u64,
        spec: WorkerSpec,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Child> {
        Child::spawn(&self.0, slot, generation, spec, events)
    }
}

/// The master's view of a live child.
pub struct Child {
    pub generation: u64,
    pub pid: u32,
    pub owner: String,
    pub started: Instant,
    /// What it is running, as it publishes it (read, never waited for).
    beacon: Beacon,
    /// Set when it reported an orderly halt.
    pub halted: Option<HaltReason>,
    /// Set when the master killed it for a reason to record against a task (timeout), with
    /// that task's lease (id, token).
    pub kill_reason: Option<(DeathCause, (i64, u64))>,
    /// Set when shutdown killed it (its tasks are released, not failed).
    pub killed_by_shutdown: bool,
    control: Option<std::os::unix::net::UnixStream>,
    quit_sent: bool,
}

impl Child {
    /// Start `program` (`rex-worker`, see [`crate::worker::program`]) in its own process group
    /// with the control socket on fd 3, hand it its spec, and start a task that reports its
    /// messages and its exit.
    pub fn spawn(
        program: &crate::worker::Program,
        slot: usize,
        generation: u64,
        spec: WorkerSpec,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Child> {
        let (master_end, child_end) = std::os::unix::net::UnixStream::pair()?;
        let child_fd = child_end.as_raw_fd();
        let beacon = Beacon::create()?;
        let beacon_fd = beacon.fd().unwrap_or(-1);
        let mut cmd = tokio::process::Command::new(&program.path);
        cmd.args(program.arg)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Moving the control socket onto fd 3 must not close the beacon.
                let mut beacon_fd = beacon_fd;
                if beacon_fd == CONTROL_FD {
                    beacon_fd = nix::libc::fcntl(beacon_fd, nix::libc::F_DUPFD_CLOEXEC, 5);
                }
                for (from, to) in [(child_fd, CONTROL_FD), (beacon_fd, BEACON_FD)] {
                    if from == to {
                        // dup2 onto itself keeps CLOEXEC; clear it explicitly.
                        nix::libc::fcntl(from, nix::libc::F_SETFD, 0);
                    } else if nix::libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(child_end);
        let pid = child.id().unwrap_or(0);
        // Writes go through a plain dup of the socket: the few bytes of a command fit in the
        // socket buffer, so a non-blocking write(2) completes at once without the reactor. The
        // spec is written before the socket turns non-blocking, as it may be large.
        let mut control = master_end.try_clone()?;
        let owner = spec.owner.clone();
        if let Err(e) = control.write_all(control::encode(&spec).as_bytes()) {
            // A child that died at once yields EPIPE; its exit is reported below like any other.
            tracing::debug!(
                logger = "AsyncTaskWorkerTask",
                "could not send the spec to worker {pid}: {e}"
            );
        }
        master_end.set_nonblocking(true)?;
        let read = tokio::net::UnixStream::from_std(master_end)?;
        tokio::spawn(async move {
            let send = |kind| {
                events.send(Event {
                    slot,
                    generation,
                    kind,
                })
            };
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(msg) = serde_json::from_str::<Up>(&line) {
                    let _ = send(EventKind::Up(msg));
                }
            }
            let status = child.wait().await.ok();
            let _ = send(EventKind::Exited(DeathCause::from_status(status)));
        });
        Ok(Child::new(generation, pid, owner, Some(control), beacon))
    }

    fn new(
        generation: u64,
        pid: u32,
        owner: String,
        control: Option<std::os::unix::net::UnixStream>,
        beacon: Beacon,
    ) -> Child {
        Child {
            generation,
            pid,
            owner,
            started: Instant::now(),
            beacon,
            halted: None,
            kill_reason: None,
            killed_by_shutdown: false,
            control,
            quit_sent: false,
        }
    }

    /// A child with no process behind it (pid 0: signals go nowhere), for a fake launcher;
    /// the test writes its beacon ([`Child::beacon`]).
    #[cfg(test)]
    pub fn detached(generation: u64, owner: String) -> Child {
        Child::new(generation, 0, owner, None, Beacon::local())
    }

    /// The beacon, to play the child's part in tests.
    #[cfg(test)]
    pub fn beacon(&self) -> &Beacon {
        &self.beacon
    }

    /// Everything its beacon says.
    pub fn snapshot(&self) -> Snapshot {
        self.beacon.read()
    }

    /// The task it is running now, and since when.
    pub fn current(&self) -> Option<Running> {
        self.beacon.read().running
    }

    /// How many tasks it has finished.
    /// The ids of the tasks of its last claim (broker-held leases only; read after death).
    pub fn claimed_ids(&self) -> Vec<i64> {
        self.beacon.claimed_ids()
    }

    /// What became of the tasks it finished (crashes aside), as its beacon tallies them.
    pub fn counters(&self) -> rex_transport::Counters {
        self.beacon.counters()
    }

    pub fn finished(&self) -> u64 {
        self.beacon.read().finished
    }

    /// Whether the master asked the child to quit.
    #[cfg(test)]
    pub fn quit_sent(&self) -> bool {
        self.quit_sent
    }

    /// Ask the child to finish its current task and stop.
    pub fn quit(&mut self) {
        if self.quit_sent {
            return;
        }
        self.quit_sent = true;
        if let Some(control) = &mut self.control {
            // If the child is already gone the error does not matter; its exit event follows.
            let _ = control.write_all(control::encode(&Down::Quit).as_bytes());
        }
    }

    /// SIGKILL the child's whole process group (it and anything it started).
    pub fn kill(&self) {
        if self.pid > 0 {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), used to tell
/// a live master from a dead one whose pid was reused. `None` for a gone or zombie process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are space-separated.
    let after = &stat[stat.rfind(')')? + 2..];
    // A zombie (state Z) is dead; it only waits for its parent to reap it.
    if after.starts_with('Z') {
        return None;
    }
    after.split(' ').nth(19)?.parse().ok()
}
