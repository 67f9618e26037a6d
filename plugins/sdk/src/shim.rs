//! The `extern "C"` side: the table [`export!`](crate::export) builds, the shims behind its
//! function pointers, the host pointer, and panic capture.
//!
//! Everything here is reachable only through `rex_plugin::__private`, for the macro.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::mem::{ManuallyDrop, size_of};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

use rex_plugin_abi::{
    REX_ABI_MAGIC, REX_ABI_MAJOR, REX_ABI_MINOR, RexBuf, RexHostV1, RexPluginV1, RexStatus, RexStr,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Log;
use crate::{Context, Payload, Result, Submit, TaskContext, Worker};

/// Version of this SDK, reported in the table's `sdk_version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A task's entry point.
pub type TaskFn = fn(&mut TaskContext, Vec<String>) -> Result<()>;

/// A registered worker: its name and how to construct it.
pub struct WorkerDef {
    pub name: &'static str,
    pub make: fn() -> Box<dyn Worker>,
    /// The logger name of the type `make` returns, known without calling `make`.
    pub logger: fn() -> &'static str,
}

/// A registered task.
pub struct TaskDef {
    pub name: &'static str,
    pub run: TaskFn,
    pub meta: TaskMeta,
}

/// A task's optional manifest fields (`usage` defaults to `rex <name>`).
#[derive(Clone, Copy)]
pub struct TaskMeta {
    pub hint: &'static str,
    pub help: &'static str,
    pub usage: &'static str,
}

impl TaskMeta {
    pub const DEFAULT: TaskMeta = TaskMeta {
        hint: "",
        help: "",
        usage: "",
    };
}

/// Everything `export!` declares.
pub struct PluginDef {
    pub package: &'static str,
    pub version: &'static str,
    pub requires: &'static [&'static str],
    pub settings: &'static str,
    pub workers: &'static [WorkerDef],
    pub tasks: &'static [TaskDef],
}

/// Per-plugin statics: the manifest text and the table pointing at it.
pub struct State {
    manifest: OnceLock<String>,
    table: OnceLock<RexPluginV1>,
}

impl State {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        State {
            manifest: OnceLock::new(),
            table: OnceLock::new(),
        }
    }
}

/// One thread's worker instances, indexed like [`PluginDef::workers`]. A worker is taken out
/// while it runs and put back afterwards (also after a panic), so no borrow is held across
/// user code and nothing stays poisoned.
pub struct Instances(RefCell<Vec<Option<Box<dyn Worker>>>>);

impl Instances {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Instances(RefCell::new(Vec::new()))
    }

    fn take(&self, index: usize) -> Option<Box<dyn Worker>> {
        self.0.borrow_mut().get_mut(index).and_then(Option::take)
    }

    fn put(&self, index: usize, worker: Box<dyn Worker>) {
        let mut slots = self.0.borrow_mut();
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        // A re-entrant call may have stored another instance meanwhile; keep the first.
        slots[index].get_or_insert(worker);
    }
}

/// Implemented by the type `export!` generates; ties the generic shims to one plugin.
pub trait Export: 'static {
    const PLUGIN: &'static PluginDef;
    fn state() -> &'static State;
    fn with_instances<R>(f: impl FnOnce(&Instances) -> R) -> R;
}

/// Take this thread's instance of worker `index`, constructing it if needed (may panic).
fn take_worker<P: Export>(index: usize) -> Box<dyn Worker> {
    P::with_instances(|i| i.take(index)).unwrap_or_else(P::PLUGIN.workers[index].make)
}

fn put_worker<P: Export>(index: usize, worker: Box<dyn Worker>) {
    P::with_instances(|i| i.put(index, worker));
}

// ---------------------------------------------------------------------------------------------
// Table and manifest

/// The body of the generated `rex_plugin_v1`: build the table once and return it.
pub fn entry<P: Export>() -> *const RexPluginV1 {
    let state = P::state();
    state.table.get_or_init(|| {
        let manifest = state.manifest.get_or_init(manifest_json::<P>);
        RexPluginV1 {
            magic: REX_ABI_MAGIC,
            abi_major: REX_ABI_MAJOR,
            abi_minor: REX_ABI_MINOR,
            struct_size: size_of::<RexPluginV1>() as u32,
            package: RexStr::new(P::PLUGIN.package),
            version: RexStr::new(P::PLUGIN.version),
            sdk_version: RexStr::new(SDK_VERSION),
            manifest_json: RexStr::new(manifest),
            init: init::<P>,
            call: call::<P>,
            run_task: run_task::<P>,
            free_buf,
        }
    })
}

#[derive(Serialize)]
struct Manifest<'a> {
    package: &'a str,
    version: &'a str,
    requires: &'a [&'a str],
    settings: &'a str,
    workers: Vec<WorkerEntry<'a>>,
    tasks: Vec<TaskEntry<'a>>,
}

#[derive(Serialize)]
struct WorkerEntry<'a> {
    name: &'a str,
    logger: &'a str,
    summary: &'a str,
}

#[derive(Serialize)]
struct TaskEntry<'a> {
    name: &'a str,
    hint: &'a str,
    help: &'a str,
    usage: String,
}

/// The manifest is pure data: building it never constructs a worker.
fn manifest_json<P: Export>() -> String {
    let plugin = P::PLUGIN;
    let workers = plugin
        .workers
        .iter()
        .map(|w| WorkerEntry {
            name: w.name,
            logger: (w.logger)(),
            summary: "",
        })
        .collect();
    let tasks = plugin
        .tasks
        .iter()
        .map(|t| TaskEntry {
            name: t.name,
            hint: t.meta.hint,
            help: t.meta.help,
            usage: if t.meta.usage.is_empty() {
                format!("rex {}", t.name)
            } else {
                t.meta.usage.to_owned()
            },
        })
        .collect();
    let manifest = Manifest {
        package: plugin.package,
        version: plugin.version,
        requires: plugin.requires,
        settings: plugin.settings,
        workers,
        tasks,
    };
    serde_json::to_string(&manifest).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Panic capture

/// A caught panic.
#[derive(Clone, Debug)]
pub(crate) struct PanicReport {
    pub(crate) message: String,
    /// `file:line:col`, when the panic hook saw it.
    pub(crate) location: Option<String>,
}

thread_local! {
    /// How many [`catch`] frames are active on this thread; the hook is silent only inside one.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// What the hook saw of the last panic on this thread.
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Install (once) a panic hook that, for panics inside [`catch`], records message and location
/// and prints nothing; other panics go to the previous hook. The hook belongs to the plugin's
/// own copy of std, so the host's panics are not affected.
pub(crate) fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.try_with(Cell::get).unwrap_or(0) == 0 {
                return previous(info);
            }
            let report = PanicReport {
                message: info.payload_as_str().unwrap_or("Box<dyn Any>").to_owned(),
                location: info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
            };
            let _ = LAST_PANIC.try_with(|slot| {
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    *slot = Some(report);
                }
            });
        }));
    });
}

/// Run `f`, turning a panic into a [`PanicReport`].
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> std::result::Result<R, PanicReport> {
    install_panic_hook();
    LAST_PANIC.with(|slot| slot.borrow_mut().take());
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|payload| {
        let seen = LAST_PANIC.with(|slot| slot.borrow_mut().take());
        let report = seen.unwrap_or_else(|| PanicReport {
            message: payload_message(&*payload),
            location: None,
        });
        // A payload whose destructor panics must not unwind out of here either.
        if let Err(nested) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(nested);
        }
        report
    })
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Run a worker as the `call` shim does: panics caught, stdout flushed afterwards (the plugin's
/// stdout buffer is its own, not the host's).
pub(crate) fn invoke<W: Worker + ?Sized>(
    worker: &mut W,
    ctx: &mut Context,
    payload: Payload,
) -> std::result::Result<Result<()>, PanicReport> {
    let result = catch(|| worker.process(ctx, payload));
    let _ = std::io::stdout().flush();
    result
}

/// Run a task as the `run_task` shim does.
pub(crate) fn invoke_task(
    task: impl FnOnce(&mut TaskContext, Vec<String>) -> Result<()>,
    ctx: &mut TaskContext,
    args: Vec<String>,
) -> std::result::Result<Result<()>, PanicReport> {
    let result = catch(|| task(ctx, args));
    let _ = std::io::stdout().flush();
    result
}

// ---------------------------------------------------------------------------------------------
// The shims

#[derive(Deserialize)]
struct CallRequest {
    queue: String,
    #[serde(default)]
    task_id: i64,
    #[serde(default)]
    attempt: u32,
    payload: Payload,
}

#[derive(Serialize)]
struct CallResponse<'a> {
    submits: &'a [Submit],
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct TaskResponse {
    exit_code: i32,
}

#[derive(Serialize)]
struct Envelope<'a> {
    kind: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    submits: Option<&'a [Submit]>,
}

type Reply = (RexStatus, Vec<u8>);

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

fn reject(status: RexStatus, message: &str) -> Reply {
    (
        status,
        json(&Envelope {
            kind: "error",
            message,
            location: None,
            submits: None,
        }),
    )
}

fn failure(
    outcome: std::result::Result<crate::Error, PanicReport>,
    submits: Option<&[Submit]>,
) -> Reply {
    match outcome {
        Ok(error) => (
            RexStatus::ERROR,
            json(&Envelope {
                kind: "error",
                message: error.message(),
                location: None,
                submits,
            }),
        ),
        Err(panic) => (
            RexStatus::PANIC,
            json(&Envelope {
                kind: "panic",
                message: &panic.message,
                location: panic.location.as_deref(),
                submits,
            }),
        ),
    }
}

/// Run a shim body so that nothing unwinds past it, and hand its reply to the host.
///
/// # Safety
/// `out` is null or valid for writing a [`RexBuf`].
unsafe fn respond(out: *mut RexBuf, body: impl FnOnce() -> Reply) -> RexStatus {
    let (status, bytes) = catch(body).unwrap_or_else(|panic| failure(Err(panic), None));
    if !out.is_null() {
        let mut bytes = ManuallyDrop::new(bytes);
        let buf = RexBuf {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        };
        // SAFETY: guaranteed by the caller; ownership passes to the host until `free_buf`.
        unsafe { out.write(buf) };
    }
    status
}

/// `RexPluginV1::init`: remember the host and the settings, install the panic hook, and
/// construct the worker named by `config_json.worker`, if any (its panic is the reply).
///
/// # Safety
/// As documented by the ABI: `host` is null or valid for the process lifetime, `config_json`
/// readable for the call, `out` null or writable.
pub unsafe extern "C" fn init<P: Export>(
    host: *const RexHostV1,
    config_json: RexStr,
    out: *mut RexBuf,
) -> RexStatus {
    install_panic_hook();
    // SAFETY: forwarded from our caller.
    unsafe {
        respond(out, || {
            if !host.is_null() {
                let size = (*host).struct_size as usize;
                if size < size_of::<RexHostV1>() {
                    let message = format!(
                        "host table is {size} bytes, expected at least {}",
                        size_of::<RexHostV1>()
                    );
                    return reject(RexStatus::BAD_INPUT, &message);
                }
            }
            let bytes = config_json.as_bytes();
            let config: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                match serde_json::from_slice(bytes) {
                    Ok(config) => config,
                    Err(e) => {
                        return reject(
                            RexStatus::BAD_INPUT,
                            &format!("invalid plugin config: {e}"),
                        );
                    }
                }
            };
            crate::host::record(host, config.get("settings"));
            // A worker process names its worker: construct it now, so that a worker that cannot
            // start (a panicking constructor) fails the process start, not its first task.
            if let Some(name) = config.get("worker").and_then(Value::as_str) {
                let Some(index) = P::PLUGIN.workers.iter().position(|w| w.name == name) else {
                    return reject(
                        RexStatus::UNKNOWN,
                        &format!("unknown worker {name:?} in {}", P::PLUGIN.package),
                    );
                };
                let worker = take_worker::<P>(index);
                put_worker::<P>(index, worker);
            }
            (RexStatus::OK, b"{}".to_vec())
        })
    }
}

/// `RexPluginV1::call`: run one task through a worker.
///
/// # Safety
/// As documented by the ABI: both strings readable for the call, `out` null or writable.
pub unsafe extern "C" fn call<P: Export>(
    worker: RexStr,
    request_json: RexStr,
    out: *mut RexBuf,
) -> RexStatus {
    // SAFETY: forwarded from our caller.
    unsafe {
        respond(out, || {
            call_inner::<P>(worker.as_str(), request_json.as_bytes())
        })
    }
}

fn call_inner<P: Export>(name: Option<&str>, request: &[u8]) -> Reply {
    let request: CallRequest = match serde_json::from_slice(request) {
        Ok(request) => request,
        Err(e) => return reject(RexStatus::BAD_INPUT, &format!("invalid call request: {e}")),
    };
    let Some(name) = name else {
        return reject(RexStatus::BAD_INPUT, "worker name is not UTF-8");
    };
    let Some(index) = P::PLUGIN.workers.iter().position(|w| w.name == name) else {
        let message = format!("unknown worker {name:?} in {}", P::PLUGIN.package);
        return reject(RexStatus::UNKNOWN, &message);
    };
    let mut worker = take_worker::<P>(index);
    let log = Log::to_host((P::PLUGIN.workers[index].logger)());
    let mut ctx = Context::new(request.queue, request.task_id, request.attempt, log);
    let result = invoke(&mut *worker, &mut ctx, request.payload);
    put_worker::<P>(index, worker);
    let (submits, value, _) = ctx.finish();
    match result {
        Ok(Ok(())) => {
            let response = CallResponse {
                submits: &submits,
                result: value.as_ref(),
            };
            (RexStatus::OK, json(&response))
        }
        Ok(Err(error)) => failure(Ok(error), Some(&submits)),
        Err(panic) => failure(Err(panic), Some(&submits)),
    }
}

/// `RexPluginV1::run_task`: run a task subcommand with its arguments (a JSON array of strings).
///
/// # Safety
/// As documented by the ABI: both strings readable for the call, `out` null or writable.
pub unsafe extern "C" fn run_task<P: Export>(
    task: RexStr,
    argv_json: RexStr,
    out: *mut RexBuf,
) -> RexStatus {
    // SAFETY: forwarded from our caller.
    unsafe {
        respond(out, || {
            run_task_inner::<P>(task.as_str(), argv_json.as_bytes())
        })
    }
}

fn run_task_inner<P: Export>(name: Option<&str>, argv: &[u8]) -> Reply {
    let Some(name) = name else {
        return reject(RexStatus::BAD_INPUT, "task name is not UTF-8");
    };
    let args: Vec<String> = if argv.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        match serde_json::from_slice(argv) {
            Ok(args) => args,
            Err(e) => {
                return reject(
                    RexStatus::BAD_INPUT,
                    &format!("invalid task arguments: {e}"),
                );
            }
        }
    };
    let Some(task) = P::PLUGIN.tasks.iter().find(|t| t.name == name) else {
        let message = format!("unknown task {name:?} in {}", P::PLUGIN.package);
        return reject(RexStatus::UNKNOWN, &message);
    };
    let mut ctx = TaskContext::new(Log::to_host(name));
    match invoke_task(task.run, &mut ctx, args) {
        Ok(Ok(())) => (RexStatus::OK, json(&TaskResponse { exit_code: 0 })),
        Ok(Err(error)) => failure(Ok(error), None),
        Err(panic) => failure(Err(panic), None),
    }
}

/// `RexPluginV1::free_buf`: release a buffer returned by one of the shims.
///
/// # Safety
/// `buf` was written by a shim of this plugin and is freed only once.
pub unsafe extern "C" fn free_buf(buf: RexBuf) {
    if !buf.ptr.is_null() {
        // SAFETY: the shims build every buffer from a Vec<u8> with exactly these parts.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}
