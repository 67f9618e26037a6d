//! Unit-test workers and tasks in-process, without a host.
//!
//! [`run`] drives a worker through the same machinery as the `call` shim (a real [`Context`],
//! panics caught and reported with message and location, stdout flushed) and captures what it
//! logged and submitted:
//!
//! ```
//! use rex_plugin::testing::{self, Status};
//! use rex_plugin::{json, Context, Level, Payload, Result, Worker};
//!
//! struct Echo;
//! impl Worker for Echo {
//!     fn process(&mut self, ctx: &mut Context, payload: Payload) -> Result<()> {
//!         ctx.info(format_args!("got {payload}"));
//!         if payload.is_truthy("again") {
//!             ctx.requeue(json!({"again": false}))?;
//!         }
//!         if payload.is_truthy("boom") {
//!             panic!("boom");
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let out = testing::run(&mut Echo, "echo", json!({"again": true}));
//! assert!(out.is_ok());
//! assert_eq!(out.messages(Level::Info), ["got {\"again\":true}"]);
//! assert_eq!(out.submits[0].queue, "echo");
//! assert_eq!(out.submits[0].payload.to_string(), r#"{"again":false}"#);
//!
//! let out = testing::run(&mut Echo, "echo", json!({"boom": 1}));
//! assert_eq!(out.panic_message(), Some("boom"));
//! ```
//!
//! [`PluginTable`] goes one level lower, through the raw table `export!` generates.

use std::fmt;

use rex_plugin_abi::{EntryFn, RexBuf, RexPluginV1, RexStatus, RexStr};
use serde_json::Value;

use crate::context::Log;
use crate::shim::{PanicReport, invoke, invoke_task};
use crate::{Context, Error, Level, LogRecord, Payload, Result, Submit, TaskContext, Worker};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// `Ok(())`.
    Ok,
    /// `Err(error)`: the error's message.
    Error(String),
    /// A panic: its message and, when known, its `file:line:col`.
    Panic {
        message: String,
        location: Option<String>,
    },
}

/// The result of [`run`] / [`run_task`].
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// Submissions, in order (always empty for tasks).
    pub submits: Vec<Submit>,
    /// The result the worker set with [`Context::set_result`](crate::Context::set_result)
    /// (the host keeps it only when the run returned `Ok`).
    pub result: Option<serde_json::Value>,
    /// Log records at or above the harness's minimum level (all, by default).
    pub logs: Vec<LogRecord>,
}

impl Outcome {
    fn new(
        result: std::result::Result<Result<()>, PanicReport>,
        submits: Vec<Submit>,
        value: Option<serde_json::Value>,
        logs: Vec<LogRecord>,
    ) -> Self {
        let status = match result {
            Ok(Ok(())) => Status::Ok,
            Ok(Err(e)) => Status::Error(e.into_message()),
            Err(p) => Status::Panic {
                message: p.message,
                location: p.location,
            },
        };
        Outcome {
            status,
            submits,
            result: value,
            logs,
        }
    }

    /// Whether the run returned `Ok(())`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The error message, if the run returned `Err`.
    pub fn error(&self) -> Option<&str> {
        match &self.status {
            Status::Error(message) => Some(message),
            _ => None,
        }
    }

    /// The panic message, if the run panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.status {
            Status::Panic { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The panic location (`file:line:col`), if the run panicked.
    pub fn panic_location(&self) -> Option<&str> {
        match &self.status {
            Status::Panic { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    /// The messages logged at exactly `level`, in order.
    pub fn messages(&self, level: Level) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|r| r.level == level)
            .map(|r| r.message.as_str())
            .collect()
    }

    /// The payloads submitted to `queue`, in order.
    pub fn submitted_to(&self, queue: &str) -> Vec<&Payload> {
        self.submits
            .iter()
            .filter(|s| s.queue == queue)
            .map(|s| &s.payload)
            .collect()
    }

    /// Panic with the status unless the run returned `Ok(())`.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.is_ok(), "expected Ok, got {}", self.status);
        self
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ok => f.write_str("Ok"),
            Status::Error(message) => write!(f, "Err({message})"),
            Status::Panic {
                message,
                location: Some(at),
            } => write!(f, "panic at {at}: {message}"),
            Status::Panic {
                message,
                location: None,
            } => write!(f, "panic: {message}"),
        }
    }
}

/// Settings for runs: the task's queue, id and attempt, and the minimum level captured.
#[derive(Clone, Debug)]
pub struct Harness {
    queue: String,
    task_id: i64,
    attempt: u32,
    min_level: Level,
}

impl Default for Harness {
    fn default() -> Self {
        Harness {
            queue: "test".to_owned(),
            task_id: 1,
            attempt: 1,
            min_level: Level::Debug,
        }
    }
}

impl Harness {
    /// Queue `test`, task id 1, attempt 1, every level captured.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    pub fn task_id(mut self, task_id: i64) -> Self {
        self.task_id = task_id;
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Drop records below `level`, as a host with that minimum level would.
    pub fn min_level(mut self, level: Level) -> Self {
        self.min_level = level;
        self
    }

    /// Run `worker` on `payload` (a [`Payload`], a map, or a JSON object value).
    ///
    /// # Panics
    /// If `payload` is not a JSON object.
    #[track_caller]
    pub fn run<W, P>(&self, worker: &mut W, payload: P) -> Outcome
    where
        W: Worker + ?Sized,
        P: TryInto<Payload>,
        P::Error: Into<Error>,
    {
        let payload = match payload.try_into() {
            Ok(payload) => payload,
            Err(e) => panic!("testing::run: {}", e.into()),
        };
        let log = Log::capture(crate::worker::logger_name::<W>(), self.min_level);
        let mut ctx = Context::new(self.queue.clone(), self.task_id, self.attempt, log);
        let result = invoke(worker, &mut ctx, payload);
        let (submits, value, mut log) = ctx.finish();
        Outcome::new(result, submits, value, log.take_records())
    }

    /// Run a task function with `args`; its logger is `name`.
    pub fn run_task<F, I>(&self, name: &str, task: F, args: I) -> Outcome
    where
        F: FnOnce(&mut TaskContext, Vec<String>) -> Result<()>,
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut ctx = TaskContext::new(Log::capture(name, self.min_level));
        let result = invoke_task(task, &mut ctx, args.into_iter().map(Into::into).collect());
        Outcome::new(result, Vec::new(), None, ctx.finish().take_records())
    }
}

/// Run `worker` on `payload` taken from `queue`, with the default [`Harness`].
///
/// # Panics
/// If `payload` is not a JSON object.
#[track_caller]
pub fn run<W, P>(worker: &mut W, queue: &str, payload: P) -> Outcome
where
    W: Worker + ?Sized,
    P: TryInto<Payload>,
    P::Error: Into<Error>,
{
    Harness::new().queue(queue).run(worker, payload)
}

/// Run a task function with `args`, with the default [`Harness`]; its logger is `name`.
pub fn run_task<F, I>(name: &str, task: F, args: I) -> Outcome
where
    F: FnOnce(&mut TaskContext, Vec<String>) -> Result<()>,
    I: IntoIterator,
    I::Item: Into<String>,
{
    Harness::new().run_task(name, task, args)
}

/// A reply from [`PluginTable`]: the status code and the decoded response document
/// (`Value::Null` if it was not JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: RexStatus,
    pub body: Value,
}

/// Drives an exported table the way the host does: `unsafe { PluginTable::new(rex_plugin_v1) }`
/// (see the [crate-level example](crate)). Without a host `init`, log records are dropped.
#[derive(Clone, Copy)]
pub struct PluginTable {
    table: &'static RexPluginV1,
}

impl PluginTable {
    /// # Safety
    /// `entry` must return a valid `'static` table, such as the `rex_plugin_v1` that
    /// [`export!`](crate::export) generates.
    pub unsafe fn new(entry: EntryFn) -> Self {
        // SAFETY: guaranteed by the caller.
        PluginTable {
            table: unsafe { &*entry() },
        }
    }

    /// The raw table.
    pub fn table(&self) -> &'static RexPluginV1 {
        self.table
    }

    /// The decoded manifest document.
    pub fn manifest(&self) -> Value {
        // SAFETY: the table's strings are 'static.
        let text = unsafe { self.table.manifest_json.as_bytes() };
        serde_json::from_slice(text).unwrap_or(Value::Null)
    }

    /// `init(no host, config)`: records the settings (first call only) and constructs the
    /// worker named by `config.worker`, if any. Log records stay dropped.
    pub fn init(&self, config: &Value) -> Reply {
        let config = config.to_string();
        let mut out = RexBuf::EMPTY;
        // SAFETY: a null host is allowed; the string outlives the call and `out` is writable.
        let status = unsafe { (self.table.init)(std::ptr::null(), RexStr::new(&config), &mut out) };
        self.reply(status, out)
    }

    /// `call(worker, request)`.
    pub fn call(&self, worker: &str, request: &Value) -> Reply {
        self.call_raw(worker, request.to_string().as_bytes())
    }

    /// `call(worker, request)` with request bytes as given (to test bad input).
    pub fn call_raw(&self, worker: &str, request: &[u8]) -> Reply {
        let mut out = RexBuf::EMPTY;
        let request = RexStr {
            ptr: request.as_ptr(),
            len: request.len(),
        };
        // SAFETY: the strings outlive the call and `out` is writable.
        let status = unsafe { (self.table.call)(RexStr::new(worker), request, &mut out) };
        self.reply(status, out)
    }

    /// `run_task(task, argv)`.
    pub fn run_task(&self, task: &str, args: &[&str]) -> Reply {
        let argv = serde_json::to_string(args).unwrap_or_default();
        let mut out = RexBuf::EMPTY;
        // SAFETY: as for `call_raw`.
        let status =
            unsafe { (self.table.run_task)(RexStr::new(task), RexStr::new(&argv), &mut out) };
        self.reply(status, out)
    }

    fn reply(&self, status: RexStatus, out: RexBuf) -> Reply {
        // SAFETY: `out` was filled by the plugin (or is empty) and is freed exactly once.
        let body = serde_json::from_slice(unsafe { out.as_bytes() }).unwrap_or(Value::Null);
        // SAFETY: as above.
        unsafe { (self.table.free_buf)(out) };
        Reply { status, body }
    }
}
