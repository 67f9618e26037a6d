//! The control channel between the master and each worker child.
//!
//! A Unix socket pair; the child's end is its file descriptor [`CONTROL_FD`]. Messages are JSON
//! lines. The master writes the [`WorkerSpec`] first, then [`Down`] commands; the child writes
//! [`Up`] events. There is no message per task: what a child is running is on its
//! [beacon](crate::beacon). A child that exits without having sent [`Up::Halted`] has *died*, whatever its
//! exit status (the original treated exit code 0 as an orderly halt, which misfired).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::logging::{self, LogConfig};
use crate::project::{App, ProjectArgs};
use crate::settings::{QueueConfig, RateLimit, RetryPolicy};

/// The child's end of the control socket.
pub const CONTROL_FD: i32 = 3;

/// Everything a child needs to work a queue; sent by the master so the child never re-reads
/// configuration that may have changed on disk since the master started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The master's version: a child of another version refuses the spec.
    pub version: String,
    /// The master's executable, which `ctl_executor` runs (the child may be `rex-worker`).
    pub rex: Option<PathBuf>,
    pub queue: String,
    pub worker: String,
    pub logger: String,
    /// The library providing the worker; `None` for built-in workers.
    pub plugin: Option<PathBuf>,
    /// Effective settings, handed to the plugin's `init`.
    pub settings: Value,
    /// Resolved transport URI (may contain credentials: never logged).
    pub transport: String,
    pub poll_interval_ms: u64,
    pub halt_when_empty: bool,
    /// Lease owner name of this child: `<host>:<master pid>:<master start>:<generation>`.
    pub owner: String,
    pub lease_ms: u64,
    /// The cap of the child's claim window (the queue's `prefetch`).
    pub prefetch: u32,
    /// `asynctask_max_payload_size`, applied to the tasks a worker submits.
    pub max_payload: usize,
    pub retry: RetryPolicy,
    pub rate: Option<RateLimit>,
    pub log: LogConfig,
    pub master_pid: u32,
    /// How `ctl_executor` re-invokes `rex` for the same application.
    pub project_args: ProjectArgs,
    /// On a transport whose broker holds the leases: the tasks that earlier children of this
    /// queue held when they died, with why they died, so that the child that gets such a task
    /// back records the real reason.
    #[serde(default)]
    pub lost_reasons: Vec<(i64, String)>,
    /// Likewise: the tasks those children had claimed but were not running when they died,
    /// to be run again without a crash charged.
    #[serde(default)]
    pub lost_innocent: Vec<i64>,
    /// Likewise: the tasks those children had completed (without submits) but not recorded,
    /// to be recorded as completed when they come back instead of run again.
    #[serde(default)]
    pub lost_completed: Vec<i64>,
}

impl WorkerSpec {
    /// The spec for working `config`'s queue in `app` as lease owner `owner`: the one place a
    /// spec is put together, for a master's children and for `asynctask-process` alike.
    pub fn new(
        app: &App,
        config: &QueueConfig,
        owner: String,
        halt_when_empty: bool,
    ) -> Result<WorkerSpec> {
        let (package, decl) = app
            .worker(&config.worker)
            .ok_or_else(|| Error::new(format!("Worker \"{}\" does not exist", config.worker)))?;
        Ok(WorkerSpec {
            version: crate::VERSION.into(),
            rex: std::env::current_exe().ok(),
            queue: config.queue.clone(),
            worker: config.worker.clone(),
            logger: decl.logger.clone(),
            plugin: package.plugin_path().cloned(),
            settings: app.settings.to_json(),
            transport: app.transport_uri(),
            poll_interval_ms: app.settings.poll_interval().as_millis() as u64,
            halt_when_empty,
            owner,
            lease_ms: app.settings.lease_duration().as_millis() as u64,
            prefetch: config.prefetch,
            max_payload: app.settings.max_payload_size(),
            retry: config.retry,
            rate: config.rate,
            log: logging::current_config(),
            master_pid: std::process::id(),
            project_args: app.args.clone(),
            lost_reasons: Vec::new(),
            lost_innocent: Vec::new(),
            lost_completed: Vec::new(),
        })
    }
}

/// Why a child stopped in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltReason {
    /// `--halt-when-empty` and the queue is drained.
    Empty,
    /// Asked to quit (by the master, or SIGTERM).
    Quit,
}

/// Child → master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Up {
    Ready,
    Halted { reason: HaltReason },
}

/// Master → child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Down {
    /// Finish the current task, claim no new one, report `Halted { Quit }` and exit.
    Quit,
}

/// One JSON line.
pub fn encode<T: Serialize>(msg: &T) -> String {
    let mut line = serde_json::to_string(msg).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json_lines() {
        assert_eq!(encode(&Up::Ready), "{\"ev\":\"ready\"}\n");
        assert_eq!(encode(&Down::Quit), "{\"cmd\":\"quit\"}\n");
        let back: Up = serde_json::from_str("{\"ev\":\"halted\",\"reason\":\"empty\"}").unwrap();
        assert_eq!(
            back,
            Up::Halted {
                reason: HaltReason::Empty
            }
        );
    }
}
