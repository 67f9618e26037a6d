//! How a task's worker code runs, and what came of it: a plugin's worker through the ABI,
//! the built-in `ctl_executor` (a `rex` command in a child process) and the built-in
//! `bench_worker` of `asynctask-bench`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};

use serde_json::Value;

use crate::logging::Logger;
use crate::plugin::{CallResult, Plugin};
use rex_transport::{Submit, Task};

/// How a task's worker code is run.
pub(super) enum Executor {
    Plugin(Plugin),
    Ctl(CtlExecutor),
    /// The built-in no-op worker of `rex asynctask-bench`.
    Bench(BenchLog),
}

/// A finished attempt, as the consumer sees it.
pub(super) enum Attempted {
    /// Succeeded, with the follow-ups it submitted and the result it returned, if any.
    Done {
        submits: Vec<Submit>,
        result: Option<Value>,
    },
    /// Failed; `detail` is logged, `reason` recorded; `permanent` skips the retry policy.
    Failed {
        detail: String,
        reason: String,
        permanent: bool,
    },
}

/// A payload shown as compact JSON in the `Got payload:` log line.
pub(super) struct JsonMap<'a>(pub(super) &'a serde_json::Map<String, Value>);

impl std::fmt::Display for JsonMap<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self.0).map_err(|_| std::fmt::Error)?)
    }
}

/// The result a worker's successful response carries (`None` when absent or null).
pub(crate) fn result_of(body: &Value) -> Option<Value> {
    body.get("result").filter(|r| !r.is_null()).cloned()
}

/// The tasks a worker's successful response asks to submit (none when absent).
pub(crate) fn submits_of(body: &Value) -> Result<Vec<Submit>, serde_json::Error> {
    body.get("submits")
        .cloned()
        .map(serde_json::from_value::<Vec<Submit>>)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Run `worker` of `plugin` on `task`.
pub(super) fn run_plugin(plugin: &Plugin, worker: &str, task: &Task) -> Attempted {
    #[derive(serde::Serialize)]
    struct Request<'a> {
        queue: &'a str,
        task_id: i64,
        attempt: u32,
        payload: &'a serde_json::Map<String, Value>,
    }
    let request = Request {
        queue: &task.queue,
        task_id: task.id,
        attempt: task.attempt,
        payload: &task.payload,
    };
    match plugin.call(worker, &request) {
        CallResult::Ok(body) => match submits_of(&body) {
            Ok(submits) => Attempted::Done {
                submits,
                result: result_of(&body),
            },
            Err(e) => Attempted::Failed {
                detail: format!("malformed response: {e}"),
                reason: format!("malformed response: {e}"),
                permanent: true,
            },
        },
        CallResult::Failed {
            panicked: true,
            message,
            location,
            ..
        } => {
            let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
            Attempted::Failed {
                detail: format!("panicked{at}:\n{message}"),
                reason: format!("panic: {message}"),
                permanent: false,
            }
        }
        CallResult::Failed { message, .. } => Attempted::Failed {
            detail: message.clone(),
            reason: message,
            permanent: false,
        },
        CallResult::Rejected(message) => Attempted::Failed {
            detail: message.clone(),
            reason: message,
            permanent: true,
        },
    }
}

/// The built-in `ctl_executor` worker: runs `rex <command>` for the same application.
pub(super) struct CtlExecutor {
    /// The master's `rex` (this process may be `rex-worker`).
    pub(super) rex: Option<std::path::PathBuf>,
    pub(super) project_args: Vec<String>,
}

impl CtlExecutor {
    pub(super) fn run(&self, logger: &Logger, task: &Task) -> Attempted {
        let fail = |msg: String| Attempted::Failed {
            detail: msg.clone(),
            reason: msg,
            permanent: true,
        };
        let Some(command) = task.payload.get("command").and_then(Value::as_str) else {
            return fail("the payload must be {\"command\": \"<rex task and arguments>\"}".into());
        };
        let Ok(words) = shell_words::split(command) else {
            return fail(format!("cannot split command: {command}"));
        };
        logger.info(format_args!("Executing Task: {command}"));
        // The master names its `rex`; without that name, `rex` beside this `rex-worker`.
        let this = || {
            std::env::current_exe().map(|exe| match exe.file_name() {
                Some(name) if name == super::BINARY => exe.with_file_name("rex"),
                _ => exe,
            })
        };
        let exe = match self.rex.clone().map(Ok).unwrap_or_else(this) {
            Ok(exe) => exe,
            Err(e) => return fail(format!("cannot find the rex executable: {e}")),
        };
        let (reader, writer) = match std::io::pipe() {
            Ok(p) => p,
            Err(e) => return fail(format!("cannot create a pipe: {e}")),
        };
        let stderr = match writer.try_clone() {
            Ok(w) => w,
            Err(e) => return fail(format!("cannot create a pipe: {e}")),
        };
        let mut child = match std::process::Command::new(exe)
            .args(&words)
            .args(&self.project_args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(stderr)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot run rex {command}: {e}")),
        };
        // Stream the command's output as it comes; keep the tail for the failure record.
        let mut tail: VecDeque<String> = VecDeque::new();
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            logger.info(format_args!("{line}"));
            tail.push_back(line);
            if tail.len() > 20 {
                tail.pop_front();
            }
        }
        let status = child.wait();
        match status {
            Ok(s) if s.success() => Attempted::Done {
                submits: Vec::new(),
                result: None,
            },
            Ok(s) => {
                let code = s
                    .code()
                    .map_or_else(|| "a signal".to_string(), |c| c.to_string());
                let output = Vec::from(tail).join("\n");
                let detail = format!(
                    "Failed execution\nReceived unexpected exit code:\n    expected 0; got {code}\nWith output:\n{}\nFrom:\n    rex {command}",
                    indent(&output)
                );
                Attempted::Failed {
                    detail,
                    reason: format!("rex {command}: exit code {code}: {output}"),
                    permanent: false,
                }
            }
            Err(e) => fail(format!("cannot wait for rex {command}: {e}")),
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("    {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where `bench_worker` appends its lines: the file its payloads name, kept open.
#[derive(Default)]
pub(super) struct BenchLog {
    open: Option<(String, std::fs::File)>,
}

/// `bench_worker`: does nothing, except that a payload carrying `bench_t` (submit time, µs
/// since the epoch) and `bench_log` (a file) gets the line
/// `<pid> <bench_t> <start µs> <claim batch size>` appended to that file — one small
/// `O_APPEND` write, whole even with many children.
pub(super) fn bench_record(log: &mut BenchLog, task: &Task, batch: usize) -> Attempted {
    if let (Some(submitted), Some(path)) = (
        task.payload.get("bench_t").and_then(Value::as_u64),
        task.payload.get("bench_log").and_then(Value::as_str),
    ) {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let line = format!("{} {submitted} {started} {batch}\n", std::process::id());
        let file = match &mut log.open {
            Some((open, file)) if open == path => Ok(file),
            _ => std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map(|file| &mut log.open.insert((path.to_string(), file)).1),
        };
        if let Err(e) = file.and_then(|f| f.write_all(line.as_bytes())) {
            let msg = format!("cannot record to {path}: {e}");
            return Attempted::Failed {
                detail: msg.clone(),
                reason: msg,
                permanent: true,
            };
        }
    }
    Attempted::Done {
        submits: Vec::new(),
        result: None,
    }
}
