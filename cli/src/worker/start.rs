//! How a child starts. The master runs the `rex-worker` binary installed beside `rex`: it holds
//! only what a child needs (no command line, no console), so each child maps a fraction of
//! `rex`'s code. Without that binary the master runs `rex __worker`, the same loop in the full
//! executable, so a lone `rex` still works.

use std::io::{BufRead, BufReader};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{Consumer, Events, QUIT};
use crate::beacon::{BEACON_FD, Beacon};
use crate::cli::Parsed;
use crate::control::{CONTROL_FD, Down, WorkerSpec};
use crate::error::{Error, Result};
use crate::logging;

/// The hidden task name under which the master re-executes `rex` as a child.
pub const TASK_NAME: &str = "__worker";

/// The child binary's file name, looked for in the directory of the running `rex`.
pub const BINARY: &str = "rex-worker";

/// What the master executes for a child.
#[derive(Clone, Debug)]
pub struct Program {
    pub path: PathBuf,
    /// [`TASK_NAME`] when `path` is `rex` itself.
    pub arg: Option<&'static str>,
}

/// The child program: `rex-worker` beside the running executable when it answers `--version`
/// with this version, else the running executable with [`TASK_NAME`]. Also says why a
/// `rex-worker` found there is not used. Runs a process: called once, before the master's loop.
pub fn program() -> std::io::Result<(Program, Option<String>)> {
    let exe = std::env::current_exe()?;
    let itself = Program {
        path: exe.clone(),
        arg: Some(TASK_NAME),
    };
    let beside = exe.with_file_name(BINARY);
    if exe.file_name().is_some_and(|n| n == BINARY) || !beside.is_file() {
        return Ok((itself, None));
    }
    let expected = format!("{BINARY} {}", crate::VERSION);
    let why = match version_of(&beside) {
        Ok(Some(said)) if said == expected => {
            let path = beside;
            return Ok((Program { path, arg: None }, None));
        }
        Ok(Some(said)) => format!("it is not {expected} (--version said {said:?})"),
        Ok(None) => format!("it did not answer --version within {VERSION_WAIT:?}"),
        Err(e) => format!("it does not run: {e}"),
    };
    let note = format!(
        "children run as rex {TASK_NAME}, not as {}: {why}",
        beside.display()
    );
    Ok((itself, Some(note)))
}

/// How long a master waits for `rex-worker --version` at start.
const VERSION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What `program --version` prints (trimmed), or `None` if it fails or does not answer
/// within [`VERSION_WAIT`] (it is then killed).
fn version_of(program: &std::path::Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut child = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + VERSION_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut said = String::new();
    if let Some(mut out) = child.stdout.take() {
        // The child has exited (or was killed): this read ends at once.
        let _ = out.read_to_string(&mut said);
    }
    Ok(status
        .filter(|s| s.success())
        .map(|_| said.trim().to_string()))
}

/// `rex __worker`.
pub fn task(_parsed: &Parsed) -> Result<i32> {
    run(TASK_NAME)
}

/// The `rex-worker` binary: returns the exit status.
pub fn main() -> i32 {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("{BINARY} {}", crate::VERSION);
        return 0;
    }
    logging::init(logging::LogConfig::default());
    match run(BINARY) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("FATAL ERROR: {}", e.render());
            1
        }
    }
}

extern "C" fn on_sigterm(_: nix::libc::c_int) {
    QUIT.store(true, Ordering::SeqCst);
}

/// A spec from a master of another version is refused before it is read (the master checked
/// `rex-worker --version` when it started, so the binary was replaced since).
fn spec_of(name: &str, line: &str) -> Result<WorkerSpec> {
    let bad = |e: serde_json::Error| Error::new(format!("bad worker spec from the master: {e}"));
    let value: Value = serde_json::from_str(line).map_err(bad)?;
    let master = value.get("version").and_then(Value::as_str).unwrap_or("?");
    if master != crate::VERSION {
        return Err(Error::new(format!(
            "{name} {} was started by rex {master}: it was replaced since that master started; \
             restart rex asynctask-workers",
            crate::VERSION
        )));
    }
    serde_json::from_value(value).map_err(bad)
}

fn run(name: &str) -> Result<i32> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use nix::sys::signal::{self, SigHandler, Signal};

    // Die with the master (it may be SIGKILLed); checked again below against the race where the
    // master died before this call.
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    // SAFETY: fd 3 is ours only if the master set it up; F_GETFD just probes it.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(CONTROL_FD) };
    if fcntl(fd, FcntlArg::F_GETFD).is_err() {
        return Err(Error::new(format!(
            "{name} is started by rex asynctask-workers, not by hand"
        )));
    }
    // Keep the control socket out of anything this child spawns (ctl_executor commands), so the
    // master sees EOF exactly when this process exits.
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    // SAFETY: fd 3 is a socket handed to us by the master and owned by nobody else here.
    let stream = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    let writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let spec = spec_of(name, &line)?;
    if nix::unistd::getppid().as_raw() as u32 != spec.master_pid {
        return Ok(1);
    }
    // Ctrl-C in a terminal goes to the master's process group only; a SIGTERM sent straight to
    // a child (systemd's KillMode=control-group) finishes the current task like `quit`.
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let _ = signal::signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal::signal(Signal::SIGTERM, SigHandler::Handler(on_sigterm));
    }
    logging::init(logging::LogConfig {
        queue: Some(spec.queue.clone()),
        ..spec.log.clone()
    });

    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let wake = wake.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    // EOF: the master is gone (PDEATHSIG normally kills us first).
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Ok(Down::Quit) = serde_json::from_str(&line) {
                            QUIT.store(true, Ordering::SeqCst);
                            wake.notify_one();
                        }
                    }
                }
            }
            QUIT.store(true, Ordering::SeqCst);
            wake.notify_one();
        });
    }
    let events = Events {
        writer: Some(Mutex::new(writer)),
    };
    let beacon = Beacon::attach(BEACON_FD)
        .map_err(|e| Error::new(format!("cannot map the beacon page from the master: {e}")))?;
    let mut consumer = Consumer::new(&spec, events, beacon, wake)?;
    consumer.run()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_from_another_version_is_refused_by_name() {
        let e = spec_of(BINARY, r#"{"version": "0.0.1-old", "queue": "q"}"#).unwrap_err();
        let expected = format!("rex-worker {} was started by rex 0.0.1-old", crate::VERSION);
        assert!(e.render().contains(&expected), "{}", e.render());
        let e = spec_of(TASK_NAME, r#"{"queue": "q"}"#).unwrap_err();
        let expected = format!("{TASK_NAME} {} was started by rex ?", crate::VERSION);
        assert!(e.render().contains(&expected), "{}", e.render());
    }

    #[test]
    fn a_spec_of_this_version_is_read_on() {
        let e = spec_of(BINARY, &format!(r#"{{"version": "{}"}}"#, crate::VERSION)).unwrap_err();
        assert!(e.render().contains("bad worker spec"), "{}", e.render());
    }
}
