//! `rex.asynctask_demo`: the demo package, a real `cdylib` plugin.
//!
//! Its workers re-create the original demo (each prints or logs what it got, so transcripts
//! show exactly what happened) plus a few that exist to exercise the supervisor: one that
//! exits its process, one that aborts, one that sleeps. Its tasks back the scheduled-`ctl`
//! scenarios. `settings.yaml` enables `foo: demo_foo_worker` and DEBUG logging.

use std::time::Duration;

use rex_plugin::{Context, Payload, Result, TaskContext, Worker, bail, json};

/// Declares a worker that prints `<LABEL> processed: <payload>`.
macro_rules! printing_worker {
    ($name:ident, $label:literal) => {
        #[doc = concat!("Prints `", $label, " processed: <payload>`.")]
        pub struct $name;

        impl Worker for $name {
            fn process(&mut self, _ctx: &mut Context, payload: Payload) -> Result<()> {
                println!(concat!($label, " processed: {}"), payload);
                Ok(())
            }
        }
    };
}

printing_worker!(FooWorker, "FOO");
printing_worker!(BarWorker, "BAR");
printing_worker!(BazWorker, "BAZ");

/// Logs `Logging Worker received: <payload>` at INFO.
pub struct LoggingWorker;

impl Worker for LoggingWorker {
    fn process(&mut self, ctx: &mut Context, payload: Payload) -> Result<()> {
        ctx.info(format_args!("Logging Worker received: {payload}"));
        Ok(())
    }
}

/// Does nothing: the no-op worker of benchmarks and `--quiet` tests.
pub struct QuietWorker;

impl Worker for QuietWorker {
    fn process(&mut self, _ctx: &mut Context, _payload: Payload) -> Result<()> {
        Ok(())
    }
}

/// Panics with `Oops!` when `payload.error` is true.
pub struct ErrorWorker;

impl Worker for ErrorWorker {
    fn process(&mut self, _ctx: &mut Context, payload: Payload) -> Result<()> {
        if payload.is_truthy("error") {
            panic!("Oops!");
        }
        println!("ERROR processed: {payload}");
        Ok(())
    }
}

/// Exits its whole process with status 1 when `payload.die` is true.
pub struct FragileWorker;

impl Worker for FragileWorker {
    fn process(&mut self, _ctx: &mut Context, payload: Payload) -> Result<()> {
        if payload.is_truthy("die") {
            println!("FRAGILE DYING!");
            std::process::exit(1);
        }
        println!("FRAGILE processed: {payload}");
        Ok(())
    }
}

/// Requeues `{"foo": 2}` when `payload.foo == 1`.
pub struct RequeueWorker;

impl Worker for RequeueWorker {
    fn process(&mut self, ctx: &mut Context, payload: Payload) -> Result<()> {
        println!("REQUEUE processed: {payload}");
        if payload.get("foo") == Some(&json!(1)) {
            ctx.requeue(json!({"foo": 2}))?;
            println!("REQUEUE requeued");
        }
        Ok(())
    }
}

/// Sleeps `payload.ms` milliseconds (default 0), then prints: a task that takes time, for
/// kill-mid-task and timeout tests.
pub struct SleepWorker;

impl Worker for SleepWorker {
    fn process(&mut self, _ctx: &mut Context, payload: Payload) -> Result<()> {
        let ms = match payload.get("ms") {
            None => 0,
            Some(value) => match value.as_u64() {
                Some(ms) => ms,
                None => bail!("payload.ms must be a non-negative integer, got {value}"),
            },
        };
        std::thread::sleep(Duration::from_millis(ms));
        println!("SLEEP processed: {payload}");
        Ok(())
    }
}

/// Adds up `payload.numbers` and returns `{"sum": N}` as the task's result, kept with the
/// completed task (`rex asynctask-show`, the console).
pub struct SumWorker;

impl Worker for SumWorker {
    fn process(&mut self, ctx: &mut Context, payload: Payload) -> Result<()> {
        let Some(numbers) = payload.get("numbers").and_then(|n| n.as_array()) else {
            bail!("payload.numbers must be an array of numbers");
        };
        let mut sum = 0.0;
        for n in numbers {
            match n.as_f64() {
                Some(n) => sum += n,
                None => bail!("payload.numbers must hold numbers only, got {n}"),
            }
        }
        println!("SUM processed: {payload}");
        ctx.set_result(json!({"sum": sum}))
    }
}

/// Calls `std::process::abort()` (SIGABRT) when `payload.abort` is true.
pub struct AbortWorker;

impl Worker for AbortWorker {
    fn process(&mut self, _ctx: &mut Context, payload: Payload) -> Result<()> {
        if payload.is_truthy("abort") {
            std::process::abort();
        }
        println!("ABORT processed: {payload}");
        Ok(())
    }
}

/// Cannot start: its constructor panics, as a worker whose connection to a service fails at
/// start-up would. Exercises the supervisor's crash-loop backoff.
pub struct UnstartableWorker;

impl Default for UnstartableWorker {
    fn default() -> Self {
        Self::new()
    }
}

impl UnstartableWorker {
    pub fn new() -> Self {
        panic!("cannot connect to the mail server");
    }
}

impl Worker for UnstartableWorker {
    fn process(&mut self, _ctx: &mut Context, _payload: Payload) -> Result<()> {
        Ok(())
    }
}

fn noisy_task(_ctx: &mut TaskContext, args: Vec<String>) -> Result<()> {
    println!("Hello {}!", args.first().map_or("world", String::as_str));
    Ok(())
}

fn quiet_task(_ctx: &mut TaskContext, _args: Vec<String>) -> Result<()> {
    Ok(())
}

fn crashy_task(_ctx: &mut TaskContext, _args: Vec<String>) -> Result<()> {
    bail!("Oops, I crashed")
}

rex_plugin::export! {
    package: "rex.asynctask_demo",
    version: env!("CARGO_PKG_VERSION"),
    requires: ["rex.asynctask"],
    settings: include_str!("../settings.yaml"),
    workers: {
        "demo_foo_worker" => FooWorker,
        "demo_bar_worker" => BarWorker,
        "demo_baz_worker" => BazWorker,
        "demo_logging_worker" => LoggingWorker,
        "demo_quiet_worker" => QuietWorker,
        "demo_error_worker" => ErrorWorker,
        "demo_fragile_worker" => FragileWorker,
        "requeue_worker" => RequeueWorker,
        "demo_sleep_worker" => SleepWorker,
        "demo_abort_worker" => AbortWorker,
        "demo_sum_worker" => SumWorker,
        "demo_unstartable_worker" => UnstartableWorker::new(),
    },
    tasks: {
        "demo-noisy-task" => { run: noisy_task, hint: "A task that says hello.", usage: "rex demo-noisy-task [NAME]" },
        "demo-quiet-task" => { run: quiet_task, hint: "A task that does nothing and says nothing." },
        "demo-crashy-task" => { run: crashy_task, hint: "A task that instantly crashes." },
    },
}

#[cfg(test)]
mod tests {
    use rex_plugin::testing;

    use super::*;

    #[test]
    fn requeue_worker_requeues_only_foo_1() {
        let out = testing::run(&mut RequeueWorker, "foo", json!({"foo": 1}));
        assert_eq!(
            out.assert_ok().submitted_to("foo")[0].to_string(),
            r#"{"foo":2}"#
        );
        let out = testing::run(&mut RequeueWorker, "foo", json!({"foo": 2}));
        assert!(out.assert_ok().submits.is_empty());
    }

    #[test]
    fn sum_worker_returns_the_sum_as_its_result() {
        let out = testing::run(&mut SumWorker, "sums", json!({"numbers": [1, 2, 3.5]}));
        assert_eq!(out.assert_ok().result, Some(json!({"sum": 6.5})));
        let out = testing::run(&mut SumWorker, "sums", json!({"numbers": [1, "x"]}));
        assert_eq!(
            out.error(),
            Some(r#"payload.numbers must hold numbers only, got "x""#)
        );
        assert_eq!(out.result, None);
    }

    #[test]
    fn error_worker_panics_with_oops() {
        let out = testing::run(&mut ErrorWorker, "foo", json!({"error": true}));
        assert_eq!(out.panic_message(), Some("Oops!"));
        testing::run(&mut ErrorWorker, "foo", json!({"error": false})).assert_ok();
    }

    #[test]
    fn sleep_worker_rejects_a_bad_duration() {
        let out = testing::run(&mut SleepWorker, "q", json!({"ms": "soon"}));
        assert_eq!(
            out.error(),
            Some(r#"payload.ms must be a non-negative integer, got "soon""#)
        );
    }

    #[test]
    fn logging_worker_logs_at_info() {
        let out = testing::run(&mut LoggingWorker, "q", json!({"b": 1, "a": [true]}));
        assert_eq!(
            out.messages(rex_plugin::Level::Info),
            [r#"Logging Worker received: {"a":[true],"b":1}"#]
        );
    }

    #[test]
    fn crashy_task_fails() {
        assert_eq!(
            testing::run_task("demo-crashy-task", crashy_task, Vec::<String>::new()).error(),
            Some("Oops, I crashed")
        );
    }
}
