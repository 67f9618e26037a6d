//! The `rex` command-line tool.
//!
//! # Layout
//!
//! * [`cli`] — rex.ctl conventions (option normalisation, help layout, error wording) over clap.
//! * [`tasks`] — the built-in tasks and dispatch to plugin-provided ones, then to `rex-<task>`
//!   programs on `PATH` (`tasks/external.rs`); `plugin-new` writes a plugin crate from the
//!   templates in `tasks/plugin_new/`; `plugin-list` and
//!   `plugin-check` (`tasks/inspect.rs`: each library loaded by a throw-away `rex __plugin-probe`);
//!   `completions` and `help --man` (`tasks/generate.rs`: one clap command tree of the tasks).
//! * [`bench`] — `asynctask-bench`: throughput, latency, restart and memory figures.
//! * [`project`] — building an application: project, requirements, packages, settings.
//! * [`package`] — what a package contributes; the built-in packages.
//! * [`plugin`] — finding, checking and calling plugin libraries (the host side of the ABI).
//! * [`settings`] — declared settings, merging, validation; the typed asynctask configuration
//!   (queues, schedule entries) built once with them.
//! * [`supervisor`] — `asynctask-workers`: the master that spawns and supervises children.
//! * [`scheduler`] — the `--scheduler` producer of `asynctask_scheduled_workers`.
//! * [`cron`] — APScheduler's cron fields over `croner` (next fire times).
//! * [`worker`] — the child process that works one queue (the `rex-worker` binary, or
//!   `rex __worker` when that binary is not installed beside `rex`).
//! * [`control`] — the master/child control channel (spec, quit, halted).
//! * [`beacon`] — the shared page where a child publishes the task it runs, for its master.
//! * [`outage`] — backoff and bounded logging while a transport is unavailable.
//! * [`logging`] — `LEVEL:Logger:message` records over `tracing`.
//! * [`runtime`] — the current-thread async runtime each command runs on.
//! * [`error`] — the user-facing error type, rendered as `FATAL ERROR: ...`.
//! * [`fuzzing`] — entry points of the fuzz targets and of their corpus replay.

pub mod beacon;
pub mod bench;
pub mod cli;
pub mod control;
pub mod cron;
pub mod error;
pub mod fuzzing;
pub mod logging;
pub mod outage;
pub mod package;
pub mod plugin;
pub mod project;
pub mod runtime;
pub mod scheduler;
pub mod settings;
pub mod supervisor;
pub mod tasks;
pub mod worker;

/// Run `rex` with `argv` (without the program name); returns the process exit status.
/// [`main`] on the process's arguments, which must be UTF-8: a payload or a name silently
/// altered (invalid bytes made U+FFFD) would not be what the user gave.
pub fn main_os(argv: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    let mut args = Vec::new();
    for (n, arg) in argv.enumerate() {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                let shown = rex_transport::excerpt(&arg.to_string_lossy(), 80);
                let e = error::Error::new("Expected UTF-8 text")
                    .context("Got:", shown)
                    .context("In argument:", format!("#{}", n + 1));
                eprintln!("FATAL ERROR: {}", e.render());
                return 1;
            }
        }
    }
    main(args)
}

/// The version of rex (`rex --version`): the `rex-cli` crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn main(argv: Vec<String>) -> i32 {
    logging::init(logging::LogConfig::default());
    let argv = match argv.first().map(String::as_str) {
        None => {
            print!("{}", tasks::ctl::BANNER);
            return 0;
        }
        Some("--version" | "-V") => {
            println!("rex {VERSION}");
            return 0;
        }
        Some("--help" | "-h") => {
            let mut argv = argv;
            argv[0] = "help".into();
            argv
        }
        Some(_) => argv,
    };
    let run = tasks::task_first(argv).and_then(|argv| {
        let (task, rest) = argv
            .split_first()
            .ok_or_else(|| error::Error::new("no task given"))?;
        // Hidden internal tasks (`__worker`, `__plugin-probe`) are spelled exactly as given.
        let task = if task.starts_with("__") {
            task.clone()
        } else {
            task.to_lowercase().replace('_', "-")
        };
        tasks::dispatch(&task, rest)
    });
    match run {
        Ok(code) => code,
        Err(e) => {
            eprintln!("FATAL ERROR: {}", e.render());
            1
        }
    }
}
