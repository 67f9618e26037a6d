//! [`Context`] (what a worker sees of its task), [`TaskContext`] (the same for a task
//! subcommand), and the logging types they share.

use std::cell::RefCell;
use std::fmt;

use rex_plugin_abi::{RexHostV1, RexStr, level};
use serde::Serialize;

use crate::{Error, Payload, Result};

/// Log levels, numbered as in Python's `logging` (and [`rex_plugin_abi::level`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Level {
    Debug = level::DEBUG,
    Info = level::INFO,
    Warning = level::WARNING,
    Error = level::ERROR,
}

impl Level {
    /// The level's number (`DEBUG` = 10 ... `ERROR` = 40).
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// The upper-case name, as the host prints it (`DEBUG`, `INFO`, `WARNING`, `ERROR`).
    pub const fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One captured log record (see [`testing`](crate::testing)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub level: Level,
    pub logger: String,
    pub message: String,
}

/// A follow-up task: `payload` submitted to `queue`. Serializes as `{"queue", "payload"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Submit {
    pub queue: String,
    pub payload: Payload,
}

/// Where log records go.
pub(crate) enum Sink {
    /// The host's `log` callback.
    Host(&'static RexHostV1),
    /// Kept for inspection (tests).
    Capture {
        min_level: Level,
        records: RefCell<Vec<LogRecord>>,
    },
    /// Dropped (no host, e.g. shims driven directly by a test).
    Discard,
}

/// A logger name plus its sink.
pub(crate) struct Log {
    logger: String,
    sink: Sink,
}

impl Log {
    /// Records go to the host given to `init`, or nowhere before that.
    pub(crate) fn to_host(logger: impl Into<String>) -> Self {
        let sink = crate::host::host().map_or(Sink::Discard, Sink::Host);
        Log {
            logger: logger.into(),
            sink,
        }
    }

    pub(crate) fn capture(logger: impl Into<String>, min_level: Level) -> Self {
        Log {
            logger: logger.into(),
            sink: Sink::Capture {
                min_level,
                records: RefCell::new(Vec::new()),
            },
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.logger
    }

    pub(crate) fn enabled(&self, level: Level) -> bool {
        match &self.sink {
            Sink::Host(host) => level.as_u32() >= host.min_level,
            Sink::Capture { min_level, .. } => level >= *min_level,
            Sink::Discard => false,
        }
    }

    pub(crate) fn emit(&self, level: Level, message: &dyn fmt::Display) {
        if !self.enabled(level) {
            return;
        }
        let message = message.to_string();
        match &self.sink {
            Sink::Host(host) => {
                // SAFETY: `init` checked the table's size; the host keeps it (and `data`) valid
                // for the process lifetime, and both strings outlive the call.
                unsafe {
                    (host.log)(
                        host.data,
                        level.as_u32(),
                        RexStr::new(&self.logger),
                        RexStr::new(&message),
                    )
                }
            }
            Sink::Capture { records, .. } => {
                if let Ok(mut records) = records.try_borrow_mut() {
                    records.push(LogRecord {
                        level,
                        logger: self.logger.clone(),
                        message,
                    });
                }
            }
            Sink::Discard => {}
        }
    }

    pub(crate) fn take_records(&mut self) -> Vec<LogRecord> {
        match &mut self.sink {
            Sink::Capture { records, .. } => std::mem::take(records.get_mut()),
            _ => Vec::new(),
        }
    }
}

/// Logging methods shared by [`Context`] and [`TaskContext`].
macro_rules! logging_methods {
    () => {
        /// The logger name records are emitted under.
        pub fn logger(&self) -> &str {
            self.log.name()
        }

        /// Whether a record at `level` would be kept; [`log`](Self::log) already checks this
        /// before formatting, so use it only to skip expensive preparation.
        pub fn log_enabled(&self, level: Level) -> bool {
            self.log.enabled(level)
        }

        /// Emit `message` at `level` through the host (formatted only when enabled).
        pub fn log(&self, level: Level, message: impl fmt::Display) {
            self.log.emit(level, &message)
        }

        /// [`log`](Self::log) at `DEBUG`.
        pub fn debug(&self, message: impl fmt::Display) {
            self.log.emit(Level::Debug, &message)
        }

        /// [`log`](Self::log) at `INFO`.
        pub fn info(&self, message: impl fmt::Display) {
            self.log.emit(Level::Info, &message)
        }

        /// [`log`](Self::log) at `WARNING`.
        pub fn warn(&self, message: impl fmt::Display) {
            self.log.emit(Level::Warning, &message)
        }

        /// [`log`](Self::log) at `ERROR`.
        pub fn error(&self, message: impl fmt::Display) {
            self.log.emit(Level::Error, &message)
        }
    };
}

/// What a worker sees of the task it is processing.
///
/// Logging goes to the host under the worker's [`logger`](Worker::logger) name. Submissions
/// ([`submit`](Context::submit), [`requeue`](Context::requeue)) are collected and handed to the
/// host with the task's result; the host applies them atomically with the task's completion.
/// They are reported even when the worker then fails or panics; the host decides.
///
/// [`Worker::logger`]: crate::Worker::logger
pub struct Context {
    queue: String,
    task_id: i64,
    attempt: u32,
    log: Log,
    submits: Vec<Submit>,
    result: Option<serde_json::Value>,
}

impl Context {
    pub(crate) fn new(queue: String, task_id: i64, attempt: u32, log: Log) -> Self {
        Context {
            queue,
            task_id,
            attempt,
            log,
            submits: Vec::new(),
            result: None,
        }
    }

    /// The queue the task was taken from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The task's id in the host's store.
    pub fn task_id(&self) -> i64 {
        self.task_id
    }

    /// Which attempt this is, as counted by the host.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Submit `payload` to `queue` once this task completes. `payload` may be a [`Payload`],
    /// a [`serde_json::Map`], or a [`serde_json::Value`] (an error unless it is an object).
    pub fn submit<P>(&mut self, queue: impl Into<String>, payload: P) -> Result<()>
    where
        P: TryInto<Payload>,
        P::Error: Into<Error>,
    {
        let payload = payload.try_into().map_err(Into::into)?;
        self.submits.push(Submit {
            queue: queue.into(),
            payload,
        });
        Ok(())
    }

    /// Submit `payload` to this task's own queue; logs `Requeued payload: <payload>` at `DEBUG`.
    pub fn requeue<P>(&mut self, payload: P) -> Result<()>
    where
        P: TryInto<Payload>,
        P::Error: Into<Error>,
    {
        let payload = payload.try_into().map_err(Into::into)?;
        self.log
            .emit(Level::Debug, &format_args!("Requeued payload: {payload}"));
        self.submits.push(Submit {
            queue: self.queue.clone(),
            payload,
        });
        Ok(())
    }

    /// The submissions collected so far.
    pub fn submits(&self) -> &[Submit] {
        &self.submits
    }

    /// Return `result` (anything that serializes to JSON) with this task: when the task
    /// completes, the host keeps it with the completed task (`rex asynctask-show`, the
    /// console) for the retention period. A later call replaces it; a task that fails or
    /// panics keeps no result. Counts against `asynctask_max_payload_size`.
    pub fn set_result<R: serde::Serialize>(&mut self, result: R) -> Result<()> {
        self.result = Some(serde_json::to_value(result)?);
        Ok(())
    }

    /// The result set so far.
    pub fn result(&self) -> Option<&serde_json::Value> {
        self.result.as_ref()
    }

    logging_methods!();

    pub(crate) fn finish(self) -> (Vec<Submit>, Option<serde_json::Value>, Log) {
        (self.submits, self.result, self.log)
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("queue", &self.queue)
            .field("task_id", &self.task_id)
            .field("attempt", &self.attempt)
            .field("logger", &self.log.logger)
            .field("submits", &self.submits)
            .field("result", &self.result)
            .finish()
    }
}

/// What a task subcommand sees: logging under the task's name. Output meant for the user goes
/// to stdout with `println!` as usual.
pub struct TaskContext {
    log: Log,
}

impl TaskContext {
    pub(crate) fn new(log: Log) -> Self {
        TaskContext { log }
    }

    /// The task's name (also its logger name).
    pub fn name(&self) -> &str {
        self.log.name()
    }

    logging_methods!();

    pub(crate) fn finish(self) -> Log {
        self.log
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("name", &self.log.logger)
            .finish()
    }
}
