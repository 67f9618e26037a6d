//! The built-in tasks (`rex <task>`), their specs, and dispatch.
//!
//! * [`ctl`] — `help`, `settings` (package `rex.ctl`).
//! * [`operator`] — `asynctask-submit`, `-queues`, `-failed`, `-retry`, `-purge`, `-pause`,
//!   `-resume`, `-process`.
//! * [`show`] — `asynctask-show`: one task with its history; `asynctask-cancel`.
//! * [`masters`] — `asynctask-masters`: the live masters and their children (heartbeats).
//! * [`events`] — `asynctask-events`: the lifecycle events of tasks, followed live.
//! * [`dashboard`] — `asynctask-dashboard`: the operator console (crate `rex-console`).
//! * [`inspect`] — `plugin-list`, `plugin-check` (each library loaded by a throw-away child).
//! * [`generate`] — `completions` and `help --man`, generated from these specs.
//! * [`plugin_new`] — `plugin-new`: a new plugin crate, ready to build and run.
//! * `asynctask-workers` is specified here and implemented by [`crate::supervisor`].
//!
//! * [`external`] — `rex foo` runs `rex-foo` from `PATH` when nothing else is named `foo`.
//!
//! A name that is not built in is looked up among the tasks of the application's plugins,
//! then on `PATH`.

pub mod ctl;
pub mod dashboard;
pub mod events;
pub mod external;
pub mod generate;
pub mod inspect;
pub mod masters;
pub mod operator;
pub mod plugin_new;
pub mod show;

use crate::cli::{ArgSpec, OptSpec, Parsed, TaskSpec, app_options};
use crate::error::{Error, Result};

/// Function implementing a task; returns the exit status.
type Run = fn(&Parsed) -> Result<i32>;

pub struct Builtin {
    pub spec: TaskSpec,
    pub run: Run,
    /// Hidden tasks are not listed by `rex help`.
    pub hidden: bool,
}

fn spec(name: &str, hint: &str, help: &str, args: Vec<ArgSpec>, options: Vec<OptSpec>) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        hint: hint.into(),
        help: help.into(),
        args,
        options,
        usage: None,
    }
}

/// The options of the tasks that only walk the plugin search path: the application options
/// are accepted (`--plugin-path` changes the path) but not shown, as they build nothing.
fn with_search_path(options: Vec<OptSpec>) -> Vec<OptSpec> {
    let mut all: Vec<OptSpec> = app_options().into_iter().map(OptSpec::hidden).collect();
    all.extend(options);
    all
}

fn with_app(options: Vec<OptSpec>) -> Vec<OptSpec> {
    let mut all = app_options();
    all.extend(options);
    all
}

const fn arg(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        optional: false,
        plural: false,
    }
}

const fn optional(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        optional: true,
        plural: false,
    }
}

/// Every built-in task, in the order `rex help` lists them.
pub fn builtins() -> Vec<Builtin> {
    vec![
        Builtin {
            spec: spec(
                "help",
                "display help on tasks and settings",
                "",
                vec![optional("topic")],
                vec![OptSpec::toggle(
                    "man",
                    "print the man page of rex (roff): every task and setting",
                )],
            ),
            run: ctl::help,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "settings",
                "show the effective settings of the application",
                "Prints every setting of the application, as merged from the packages'\nsettings.yaml, rex.yaml, REX_PARAMETERS and --set, in YAML.",
                vec![optional("project")],
                with_app(vec![OptSpec::toggle(
                    "defaults",
                    "list every setting with its default value and description",
                )]),
            ),
            run: ctl::settings,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-workers",
                "Launches processes for the rex.asynctask workers that are configured.",
                "Starts worker processes according to the asynctask_workers setting that\nwill continually watch the queues and process tasks as they come across.",
                vec![optional("project")],
                with_app(vec![
                    OptSpec::toggle(
                        "scheduler",
                        "if specified, this process also enqueues the fires of asynctask_scheduled_workers. Any number of processes may do so: those sharing the transport and the same entries enqueue each fire once (under an idempotency key).",
                    ),
                    OptSpec::toggle("quiet", "if specified, no logging output will be produced")
                        .short('q'),
                    OptSpec::toggle(
                        "halt-when-empty",
                        "if specified, workers will automatically stop running when they detect no more tasks are found in their queue.",
                    ),
                ]),
            ),
            run: crate::supervisor::task,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-bench",
                "measure a transport with real worker processes",
                "Submits tasks for the built-in no-op bench_worker, runs asynctask-workers on\nthem and reports submit, drain and end-to-end rates, submit->start latency,\nrestart latency and peak memory. Runs in a scratch directory: without --transport\nit measures a fresh SQLite file. Also reports the claim batch sizes the children saw.",
                vec![],
                vec![
                    OptSpec::value(
                        "transport",
                        "URI",
                        "the transport to measure (default: a fresh SQLite file)",
                    ),
                    OptSpec::value("tasks", "N", "how many tasks (default 10000)"),
                    OptSpec::value("queues", "Q", "spread over this many queues (default 1)"),
                    OptSpec::value("concurrency", "C", "children per queue (default 1)"),
                    OptSpec::value(
                        "prefetch",
                        "P",
                        "the queues' prefetch: most tasks a child claims at once (default 64)",
                    ),
                    OptSpec::value(
                        "payload-bytes",
                        "B",
                        "padding added to each payload (default 0)",
                    ),
                    OptSpec::value(
                        "mode",
                        "MODE",
                        "burn-down (submit all, then drain), steady (submit at --rate while workers run) or soak (steady for --duration, children killed every --restart-every, memory and open files sampled)",
                    ),
                    OptSpec::value(
                        "duration",
                        "D",
                        "soak mode: how long to submit (default 60s)",
                    ),
                    OptSpec::value(
                        "restart-every",
                        "D",
                        "soak mode: SIGKILL a child this often (default: never)",
                    ),
                    OptSpec::value(
                        "rate",
                        "R",
                        "steady and soak modes: tasks submitted per second (default 500)",
                    ),
                    OptSpec::toggle("json", "print one JSON object instead of text"),
                ],
            ),
            run: crate::bench::task,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-schedules",
                "show the scheduled workers with their last and next fire",
                "Lists each entry of asynctask_scheduled_workers: what it runs, its queue, its\nschedule, when it last fired (as recorded in the transport) and when it fires next.",
                vec![],
                with_app(vec![OptSpec::toggle(
                    "json",
                    "print a JSON array instead of a table",
                )]),
            ),
            run: operator::schedules,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-submit",
                "submit a task to a queue",
                "Submits a JSON object as a task to the named queue. With - as the payload,\nreads tasks from standard input, one JSON object per line.",
                vec![arg("queue"), arg("payload")],
                with_app(vec![OptSpec::value(
                    "delay",
                    "DURATION",
                    "do not start the task before this delay (500ms, 30s, 5m)",
                )]),
            ),
            run: operator::submit,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-queues",
                "show the queues and how many tasks they hold",
                "Lists every queue that holds tasks or is paused, with the number ready to run,\ndelayed (due later), running and failed, and the age of the oldest pending (ready\nor delayed) task; a paused queue is marked (paused). --json gives the same fields,\npending (ready + delayed) and paused (true or false).",
                vec![],
                with_app(vec![OptSpec::toggle(
                    "json",
                    "print a JSON array instead of a table",
                )]),
            ),
            run: operator::queues,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-show",
                "show one task with its payload and attempt history",
                "Shows a task the transport keeps (pending: ready or delayed, running, or failed)\nwith its queue, state, due time, owner, attempt counters, last error, payload and\nthe history of its attempts. Completed tasks are not kept. --json prints the task\nas asynctask-failed --json lists it.",
                vec![arg("task-id")],
                with_app(vec![OptSpec::toggle(
                    "json",
                    "print a JSON object instead of text",
                )]),
            ),
            run: show::show,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-cancel",
                "cancel a pending or running task",
                "Cancels a task. A pending one (ready or delayed) becomes failed at once, its\nattempt recorded as cancelled; a running one is stopped by the master running it\nwithin a few seconds (its worker is killed and restarted) and recorded the same way.\nA cancelled task counts as neither an error nor a crash, is never retried by policy,\nand can be retried or purged like any failed task. Not on RabbitMQ, where a task\ncannot be taken out of its queue.",
                vec![arg("task-id")],
                with_app(vec![]),
            ),
            run: show::cancel,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-failed",
                "list the tasks that failed",
                "Lists the failed tasks (oldest first) with their payload, attempts and last error.",
                vec![],
                with_app(vec![
                    OptSpec::value("queue", "QUEUE", "only the failed tasks of this queue"),
                    OptSpec::toggle("json", "print a JSON array instead of text"),
                ]),
            ),
            run: operator::failed,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-retry",
                "put failed tasks back on their queue",
                "Moves failed tasks back to pending, with their attempt counters reset.\nName the tasks by id, or use --queue or --all.",
                vec![ArgSpec {
                    name: "id",
                    optional: true,
                    plural: true,
                }],
                with_app(vec![
                    OptSpec::value("queue", "QUEUE", "retry every failed task of this queue"),
                    OptSpec::toggle("all", "retry every failed task"),
                ]),
            ),
            run: operator::retry,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-purge",
                "delete tasks from a queue",
                "Deletes the failed tasks (--failed, the default) or the pending tasks\n(--pending) of a queue. Running tasks are never deleted.",
                vec![],
                with_app(vec![
                    OptSpec::value("queue", "QUEUE", "the queue to purge"),
                    OptSpec::toggle("failed", "delete the failed tasks"),
                    OptSpec::toggle("pending", "delete the pending tasks"),
                ]),
            ),
            run: operator::purge,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-pause",
                "stop workers from starting tasks of a queue",
                "Pauses a queue: workers start none of its tasks until it is resumed (tasks already\nrunning finish; tasks a worker claimed ahead go back, uncharged). Submits are still\naccepted. A queue need not hold tasks to be paused.",
                vec![arg("queue")],
                with_app(vec![]),
            ),
            run: operator::pause,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-resume",
                "let workers start the tasks of a paused queue again",
                "Resumes a paused queue: its idle workers are woken and take its tasks again.",
                vec![arg("queue")],
                with_app(vec![]),
            ),
            run: operator::resume,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-masters",
                "list the running asynctask-workers masters and their children",
                "Lists every live rex asynctask-workers master sharing the transport, as each\npublishes itself every 2 seconds: its host, pid, version and start, and per child\nits queue, slot, pid, the task it runs and for how long, how many tasks it\nprocessed, its restarts and resident memory. A master that stopped disappears at\nonce; one that died, within 6 seconds.",
                vec![],
                with_app(vec![OptSpec::toggle(
                    "json",
                    "print a JSON array instead of a table",
                )]),
            ),
            run: masters::masters,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-events",
                "follow what happens to tasks, one line per event, as it happens",
                "Prints every lifecycle event of the tasks of the transport as it happens, one\nline each, until interrupted: submitted, started (claimed by a worker), succeeded,\nfailed, retried, crashed, cancelled, released (given back unstarted). The events\ncome from the transport's own publish/subscribe, published by the processes that\ncause them while someone follows; nothing polls the tasks. A follower sees events\nfrom at most 2 seconds after it starts. The feed is live, not a log: what happened\nbefore, or while no one followed, is in asynctask-show and the history counters.",
                vec![],
                with_app(vec![
                    OptSpec::value("queue", "QUEUE", "only the events of this queue"),
                    OptSpec::toggle("json", "print one JSON object per event"),
                ]),
            ),
            run: events::events,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-process",
                "process the tasks of a queue in this process, then exit",
                "Drains a queue in the current process with the worker configured for it\n(or --worker), without supervision, and prints how many tasks it processed.",
                vec![arg("queue")],
                with_app(vec![OptSpec::value(
                    "worker",
                    "WORKER",
                    "the worker to use instead of the configured one",
                )]),
            ),
            run: operator::process,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "asynctask-dashboard",
                "serve the operator console: queues, tasks, failures, workers, metrics",
                "Serves an operator console over HTTP for every queue of the project's transport:\nHTML pages (queues, tasks, failed tasks, workers), a JSON API under /api/ and\n/metrics (OpenMetrics). Binds 127.0.0.1:8600 by default; any other than a\nloopback address needs an access token (--token or REX_DASHBOARD_TOKEN). Every\naction is a POST carrying a CSRF token. Stops on SIGINT or SIGTERM.\nSee docs/console.md.",
                vec![optional("project")],
                with_app(vec![
                    OptSpec::value(
                        "bind",
                        "ADDR",
                        "the address to listen on (default 127.0.0.1:8600; port 0 picks a free one)",
                    ),
                    OptSpec::toggle(
                        "read-only",
                        "no actions: pages show no buttons, action endpoints answer 403",
                    ),
                    OptSpec::value(
                        "token",
                        "TOKEN",
                        "access token required on every request (default: REX_DASHBOARD_TOKEN)",
                    ),
                ]),
            ),
            run: dashboard::task,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "plugin-new",
                "create a plugin crate with a worker, ready to build and run",
                "Writes a new plugin crate for the package rex.NAME in ./NAME (or --path):\nCargo.toml, settings.yaml with one queue, src/lib.rs with its worker and a unit\ntest, rex.yaml to run it from that directory, and a README.md. Prints the\ncommands that build it, submit a task and process it.",
                vec![arg("name")],
                vec![OptSpec::value(
                    "path",
                    "DIR",
                    "the directory to create (default ./NAME); it may exist if empty",
                )],
            ),
            run: plugin_new::plugin_new,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "plugin-list",
                "list the plugin libraries rex can find, and what each provides",
                "Lists every librex_*.so on the plugin search path, in search order, with its\npackage, version, plugin ABI, workers, tasks and default settings, or why it is\nnot a usable plugin. Each library is loaded in a separate process, so a broken one\nis reported and the listing goes on.",
                vec![],
                with_search_path(vec![OptSpec::toggle(
                    "json",
                    "print a JSON object (search_path, plugins) instead of text",
                )]),
            ),
            run: inspect::plugin_list,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "plugin-check",
                "check that a library is a rex plugin and show what it exports",
                "Loads the library (a path, or a package name such as rex.acme to look up on the\nplugin search path) in a separate process, so a crash cannot take rex down, and\nshows its package, version, plugin ABI, workers, tasks and default settings.\nExits with status 1, saying why, when it is not a usable rex plugin: not a file,\nunsafe location, not a shared library, load error, missing entry point, ABI\nmismatch, or a crash while loading.",
                vec![arg("file")],
                with_search_path(vec![OptSpec::toggle(
                    "json",
                    "print a JSON object instead of text",
                )]),
            ),
            run: inspect::plugin_check,
            hidden: false,
        },
        Builtin {
            spec: spec(
                "completions",
                "print a shell completion script",
                "Prints the completion script of rex for bash, zsh or fish: task names and\noptions, and in bash and fish the project's queues (--queue, asynctask-submit),\nworkers (--worker) and plugin and external tasks, asked from rex as you type.\nLoad it with, for bash: source <(rex completions bash)",
                vec![arg("shell")],
                vec![],
            ),
            run: generate::completions,
            hidden: false,
        },
        Builtin {
            spec: spec(
                generate::COMPLETE_TASK,
                "internal: names for the completion scripts",
                "",
                vec![arg("what")],
                with_search_path(vec![]),
            ),
            run: generate::complete,
            hidden: true,
        },
        Builtin {
            spec: spec(
                inspect::PROBE_TASK,
                "internal: load one plugin library and report on it",
                "",
                vec![arg("file")],
                vec![],
            ),
            run: inspect::probe,
            hidden: true,
        },
        Builtin {
            spec: spec(
                crate::worker::TASK_NAME,
                "internal: a supervised worker child",
                "",
                vec![],
                vec![],
            ),
            run: crate::worker::task,
            hidden: true,
        },
    ]
}

pub fn find(name: &str) -> Option<Builtin> {
    builtins().into_iter().find(|b| b.spec.name == name)
}

/// `argv` with the task name first: options may come before it too (`rex --project=X
/// asynctask-queues`), and are moved after it, where the task's parser reads them. The task is
/// the first argument that is neither an option nor the value of one: an option that takes a
/// value in some task, given as `--name VALUE` or `-n VALUE`, takes the next argument along.
pub fn task_first(mut argv: Vec<String>) -> Result<Vec<String>> {
    let takes_value = |arg: &str| {
        let arg = crate::cli::normalize(&[arg.to_string()])
            .pop()
            .unwrap_or_default();
        builtins().iter().flat_map(|b| &b.spec.options).any(|o| {
            o.value.is_some()
                && (arg.strip_prefix("--") == Some(o.long)
                    || o.short.is_some_and(|s| arg == format!("-{s}")))
        })
    };
    let mut at = 0;
    while let Some(arg) = argv.get(at).filter(|a| a.starts_with('-') && a.len() > 1) {
        at += if takes_value(arg) { 2 } else { 1 };
    }
    if at >= argv.len() {
        return Err(Error::new(format!(
            "no task given, only the options {}: the usage is rex <task> [<arguments>...] [<options>...]",
            argv.join(" ")
        )));
    }
    let task = argv.remove(at);
    argv.insert(0, task);
    Ok(argv)
}

/// `rex <name> <argv>`.
pub fn dispatch(name: &str, argv: &[String]) -> Result<i32> {
    if let Some(builtin) = find(name) {
        let parsed = builtin.spec.parse(argv)?;
        if parsed.help_requested() {
            print!("{}", builtin.spec.help());
            return Ok(0);
        }
        return (builtin.run)(&parsed);
    }
    if let Some(code) = ctl::run_plugin_task(name, argv)? {
        return Ok(code);
    }
    match external::find(name) {
        Some(program) => external::run(name, program, argv),
        None => Err(Error::new(format!("unknown task {name}"))),
    }
}
