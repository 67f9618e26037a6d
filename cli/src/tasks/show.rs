//! One task by id: `rex asynctask-show <task-id>`, a task the transport keeps (pending,
//! running, failed, or completed and not pruned yet) with its payload, counters, due time,
//! owner, result and attempt history; and `rex asynctask-cancel <task-id>`.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use rex_transport::console::{CANCELLED, Cancel};
use rex_transport::{Attempt, TaskId, TaskState, TaskSummary};

use super::operator::{app, print_table};
use crate::cli::Parsed;
use crate::error::{Error, Result};
use crate::runtime::current_thread;

/// The `task-id` argument.
fn task_id(parsed: &Parsed) -> Result<TaskId> {
    let text = parsed.arg("task-id").unwrap_or_default();
    text.trim()
        .parse()
        .map_err(|_| Error::new(format!("invalid task id {text}")))
}

/// `rex asynctask-cancel <task-id>`: a pending task is failed at once, its attempt recorded
/// as cancelled; a running one is stopped by its master within a few seconds.
pub fn cancel(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let id = task_id(parsed)?;
    let transport = app.open_shared_transport()?;
    let done = current_thread()?.block_on(rex_transport::console::cancel(
        transport.as_ref(),
        id,
        CANCELLED,
    ))?;
    match done {
        Cancel::Cancelled => println!("Cancelled task {id} (kept as failed: retry or purge it)."),
        Cancel::Requested { owner } => println!(
            "Asked the master running task {id}{} to stop it; it is recorded as cancelled within a few seconds.",
            owner.map(|o| format!(" (worker {o})")).unwrap_or_default()
        ),
        Cancel::Finished { state } => {
            return Err(Error::new(format!(
                "task {id} is {} and cannot be cancelled",
                state.as_str()
            )));
        }
        Cancel::NotFound => return Err(not_found(id, transport.as_ref())),
    }
    Ok(0)
}

pub fn show(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let id = task_id(parsed)?;
    let transport = app.open_shared_transport()?;
    let task = current_thread()?
        .block_on(transport.task(id))?
        .ok_or_else(|| not_found(id, transport.as_ref()))?;
    if parsed.flag("json") {
        println!(
            "{}",
            serde_json::to_string(&task).unwrap_or_else(|_| "{}".into())
        );
        return Ok(0);
    }
    print!("{}", render(&task, SystemTime::now()));
    if !task.history.is_empty() {
        println!("history:");
        print_table(
            [
                "ATTEMPT",
                "OUTCOME",
                "FINISHED AT",
                "TOOK",
                "OWNER",
                "REASON",
            ],
            &history_rows(&task.history),
        );
    }
    Ok(0)
}

/// A task the transport does not have: never submitted, or completed and gone.
fn not_found(id: TaskId, transport: &dyn rex_transport::Transport) -> Error {
    if transport.keeps_completed() {
        Error::new(format!(
            "no task {id} (completed tasks are kept for asynctask_completed_retention)"
        ))
    } else {
        Error::new(format!(
            "no task {id} ({} keeps no completed task)",
            transport.describe()
        ))
    }
}

/// The state as a listing names it: a pending task is `ready` or `delayed` (due later).
pub(crate) fn state_name(task: &TaskSummary, now: SystemTime) -> &'static str {
    match task.state {
        TaskState::Pending if task.run_at.is_some_and(|at| at > now) => "delayed",
        TaskState::Pending => "ready",
        state => state.as_str(),
    }
}

/// RFC 3339 in UTC, to the millisecond.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| rfc3339(t.into()))
}

/// Everything but the history table.
fn render(task: &TaskSummary, now: SystemTime) -> String {
    let mut out = format!("Task {} on queue \"{}\"\n", task.id, task.queue);
    let mut field = |name: &str, value: &str| {
        out.push_str(&format!("{:<12}{value}\n", format!("{name}:")));
    };
    field("state", state_name(task, now));
    let at = task.run_at.map_or_else(|| "-".into(), rfc3339);
    match task.state {
        TaskState::Done => field("completed", &at),
        _ => field("run at", &at),
    }
    field("owner", task.owner.as_deref().unwrap_or("-"));
    field(
        "attempts",
        &format!(
            "{} (errors {}, crashes {})",
            task.attempts, task.errors, task.crashes
        ),
    );
    field("created at", &rfc3339(task.created_at));
    match task.last_error.as_deref() {
        None => field("last error", "-"),
        Some(error) if !error.contains('\n') => field("last error", error),
        Some(error) => {
            field("last error", "");
            for line in error.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out.push_str("payload:\n");
    let pretty = serde_json::to_string_pretty(&task.payload).unwrap_or_else(|_| "{}".into());
    for line in pretty.lines() {
        out.push_str(&format!("    {line}\n"));
    }
    if let Some(result) = &task.result {
        out.push_str("result:\n");
        let pretty = serde_json::to_string_pretty(result).unwrap_or_else(|_| "null".into());
        for line in pretty.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

/// How long an attempt took, when its start is known: `850ms`, `12.3s`, `4m05s`.
pub(crate) fn took(attempt: &Attempt) -> Option<String> {
    let ms = attempt.took()?.as_millis();
    Some(match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
    })
}

fn history_rows(history: &[Attempt]) -> Vec<[String; 6]> {
    history
        .iter()
        .map(|a| {
            let outcome = serde_json::to_value(a.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            [
                a.attempt.to_string(),
                outcome,
                rfc3339_ms(a.finished_at),
                took(a).unwrap_or_else(|| "-".into()),
                a.owner.clone(),
                a.reason
                    .as_deref()
                    .and_then(|r| r.lines().next())
                    .unwrap_or("-")
                    .to_string(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rex_transport::Outcome;
    use std::time::{Duration, UNIX_EPOCH};

    fn summary() -> TaskSummary {
        let mut payload = rex_transport::Payload::new();
        payload.insert("ms".into(), 5.into());
        TaskSummary {
            id: 7,
            queue: "slow".into(),
            state: TaskState::Failed,
            payload,
            attempts: 2,
            errors: 1,
            crashes: 1,
            last_error: Some("killed by SIGKILL".into()),
            history: vec![Attempt {
                attempt: 1,
                owner: "host:1:2:3".into(),
                outcome: Outcome::Error,
                reason: Some("Oops\nmore".into()),
                started_at: Some(1_700_000_000_100),
                finished_at: 1_700_000_000_123,
            }],
            created_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            run_at: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_001_000)),
            owner: None,
            result: None,
        }
    }

    #[test]
    fn a_task_is_shown_field_by_field_with_its_payload_indented() {
        let text = render(&summary(), SystemTime::now());
        assert_eq!(
            text,
            "Task 7 on queue \"slow\"\n\
             state:      failed\n\
             run at:     2023-11-14T22:13:21.000Z\n\
             owner:      -\n\
             attempts:   2 (errors 1, crashes 1)\n\
             created at: 2023-11-14T22:13:20.000Z\n\
             last error: killed by SIGKILL\n\
             payload:\n    {\n      \"ms\": 5\n    }\n"
        );
        let rows = history_rows(&summary().history);
        assert_eq!(
            rows[0],
            [
                "1".to_string(),
                "error".into(),
                "2023-11-14T22:13:20.123Z".into(),
                "23ms".into(),
                "host:1:2:3".into(),
                "Oops".into()
            ]
        );
    }

    #[test]
    fn a_completed_task_shows_when_it_completed_and_its_result() {
        let mut task = summary();
        task.state = TaskState::Done;
        task.last_error = None;
        task.result = Some(serde_json::json!({"sum": 6}));
        let text = render(&task, SystemTime::now());
        assert!(text.contains("state:      done\ncompleted:  2023-11-14T22:13:21.000Z\n"));
        assert!(
            text.ends_with("result:\n    {\n      \"sum\": 6\n    }\n"),
            "{text}"
        );
    }

    #[test]
    fn an_attempt_took_its_time_from_start_to_finish() {
        let mut attempt = summary().history.remove(0);
        let took_ms = |attempt: &mut Attempt, ms: i64| {
            attempt.started_at = Some(attempt.finished_at - ms);
            took(attempt)
        };
        assert_eq!(took_ms(&mut attempt, 999).as_deref(), Some("999ms"));
        assert_eq!(took_ms(&mut attempt, 12_345).as_deref(), Some("12.3s"));
        assert_eq!(took_ms(&mut attempt, 245_000).as_deref(), Some("4m05s"));
        attempt.started_at = None;
        assert_eq!(took(&attempt), None);
    }

    #[test]
    fn a_pending_task_is_ready_or_delayed_by_its_due_time() {
        let mut task = summary();
        task.state = TaskState::Pending;
        let due = task.run_at.expect("run_at");
        assert_eq!(state_name(&task, due), "ready");
        assert_eq!(state_name(&task, due - Duration::from_secs(1)), "delayed");
        task.run_at = None;
        assert_eq!(state_name(&task, due), "ready");
    }
}
