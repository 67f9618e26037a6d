//! The SDK for writing `rex` plugins in Rust.
//!
//! A plugin is a `cdylib` that implements [`Worker`]s (and optionally task subcommands) and
//! declares them with [`export!`], which generates the C ABI table of [`rex_plugin_abi`]:
//! the manifest, the `rex_plugin_v1` entry point and `extern "C"` shims that decode requests,
//! catch panics and encode responses. Plugin code never touches the ABI itself.
//!
//! ```rust,standalone_crate
//! use rex_plugin::{Context, Payload, Result, TaskContext, Worker, json};
//!
//! struct FooWorker;
//!
//! impl Worker for FooWorker {
//!     fn process(&mut self, ctx: &mut Context, payload: Payload) -> Result<()> {
//!         println!("FOO processed: {payload}");
//!         if payload.get("foo") == Some(&json!(1)) {
//!             ctx.requeue(json!({"foo": 2}))?; // logs "Requeued payload: {"foo":2}" at DEBUG
//!         }
//!         Ok(())
//!     }
//! }
//!
//! fn noisy_task(ctx: &mut TaskContext, _args: Vec<String>) -> Result<()> {
//!     ctx.debug("about to greet");
//!     println!("Hello world!");
//!     Ok(())
//! }
//!
//! rex_plugin::export! {
//!     package: "rex.foo",
//!     version: "1.2.3",
//!     requires: ["rex.asynctask"],
//!     settings: "asynctask_workers:\n  foo: foo_worker\n",
//!     workers: { "foo_worker" => FooWorker },
//!     tasks: { "foo-hello" => { run: noisy_task, hint: "Say hello." } },
//! }
//!
//! # fn main() {
//! // Unit-test the worker without a host...
//! let out = rex_plugin::testing::run(&mut FooWorker, "foo", json!({"foo": 1}));
//! assert!(out.is_ok());
//! assert_eq!(out.submitted_to("foo")[0].to_string(), r#"{"foo":2}"#);
//!
//! // ...or drive the generated table as the host would.
//! use rex_plugin::abi::RexStatus;
//! let plugin = unsafe { rex_plugin::testing::PluginTable::new(rex_plugin_v1) };
//! assert_eq!(plugin.manifest()["workers"][0]["logger"], "FooWorker");
//! let reply = plugin.call("foo_worker", &json!({"queue": "foo", "task_id": 7, "attempt": 1, "payload": {"foo": 1}}));
//! assert_eq!(reply.status, RexStatus::OK);
//! assert_eq!(reply.body, json!({"submits": [{"queue": "foo", "payload": {"foo": 2}}]}));
//! assert_eq!(plugin.run_task("foo-hello", &[]).body, json!({"exit_code": 0}));
//! # }
//! ```
//!
//! # Layout
//!
//! * [`worker`]: the [`Worker`] trait.
//! * [`context`]: [`Context`] (queue, task id, attempt, logging, [`submit`](Context::submit) /
//!   [`requeue`](Context::requeue)), [`TaskContext`] for task subcommands, [`Level`],
//!   [`LogRecord`], [`Submit`].
//! * [`payload`]: [`Payload`], a JSON object that prints as compact JSON with sorted keys, and
//!   [`payload!`].
//! * [`error`]: [`Error`], [`Result`] and [`bail!`].
//! * [`export`]: the [`export!`] macro.
//! * `shim` (private): the table, the `extern "C"` shims (`init`, `call`, `run_task`,
//!   `free_buf`), the host pointer and panic capture. Reached by the macro through
//!   `__private`.
//! * [`testing`]: run workers and tasks in-process with captured logs and submissions, or
//!   drive an exported table through its raw function pointers.
//! * [`guide`]: the plugin author's guide (`docs/writing-plugins.md`), whose examples run as
//!   doc tests.
//!
//! # Runtime behaviour
//!
//! * Each worker is constructed from its `export!` expression at most once per thread, when
//!   the host starts a worker process for it (a panicking constructor fails that start) or at
//!   its first task, and reused for every task; it need not be `Send`. Reading the manifest
//!   (which the supervising master does) never runs worker code.
//! * Panics in a worker or task are caught (the plugin's panic hook records message and
//!   `file:line:col` and prints nothing) and reported to the host as `PANIC`; the worker stays
//!   usable. Nothing unwinds across the ABI.
//! * Log records go through the host's `log` callback under the worker's logger name (the
//!   task's name for tasks); records below the host's `min_level` are not even formatted.
//!   Before `init` (or in [`testing`]) they are dropped (or captured).
//! * The plugin's stdout is flushed after every worker call and task.

pub mod context;
pub mod error;
#[doc = include_str!("../../../docs/writing-plugins.md")]
// The guide's src/lib.rs ends with its unit-test module, as a plugin's does: the doc test
// compiles the plugin, and tests/guide.rs builds the guide's crate and runs that test.
#[allow(clippy::test_attr_in_doctest)]
pub mod guide {}
pub mod export;
mod host;
pub mod payload;
mod shim;
pub mod testing;
pub mod worker;

pub use context::{Context, Level, LogRecord, Submit, TaskContext};
pub use error::{Error, Result};
pub use host::settings;
pub use payload::Payload;
pub use rex_plugin_abi as abi;
pub use serde_json;
pub use serde_json::json;
pub use shim::{SDK_VERSION, TaskFn};
pub use worker::{Worker, logger_name};

/// Used by the [`export!`] expansion; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::shim::{
        Export, Instances, PluginDef, State, TaskDef, TaskMeta, WorkerDef, entry,
    };
    pub use crate::worker::logger_name_of;
}

#[cfg(test)]
mod tests;
