//! What the pages and the API share: queue rows, filters read from query strings, task and
//! master views with readable times, and how transport errors become HTTP statuses.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rex_transport::console::MAX_PAGE;
use rex_transport::{
    ListState, MasterRecord, TaskFilter, TaskId, TaskSummary, Transport, TransportError,
};
use serde::{Deserialize, Serialize};

use crate::server::Shared;

/// The page size of listings when the request names none.
pub const PAGE: usize = 50;

/// A JSON error: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<TransportError> for ApiError {
    fn from(e: TransportError) -> Self {
        ApiError::new(status_of(&e), e.to_string())
    }
}

/// A transport error is never the request's fault: 503 when the backend is unavailable, 501
/// when this transport cannot do it, 500 otherwise; 400 for a bad queue name.
pub fn status_of(e: &TransportError) -> StatusCode {
    match e {
        TransportError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        TransportError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        TransportError::InvalidQueueName(_) | TransportError::InvalidScheduleId(_) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn check_queue(queue: &str) -> Result<(), ApiError> {
    rex_transport::validate_queue_name(queue).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// One line of the overview: a queue configured or holding tasks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueRow {
    pub queue: String,
    pub ready: u64,
    pub delayed: u64,
    pub running: u64,
    pub failed: u64,
    pub oldest_pending_ms: Option<u64>,
    /// `None` when the transport cannot tell.
    pub paused: Option<bool>,
    /// Named in `asynctask_workers`.
    pub configured: bool,
}

/// The rows of every queue, configured ∪ `stats()`, by name; and why the paused state of the
/// queues without tasks is unknown, when it is.
pub async fn queue_rows(state: &Shared) -> Result<(Vec<QueueRow>, Option<String>), TransportError> {
    let transport = &state.config.transport;
    let stats = state.snapshot.stats(transport).await?;
    let (paused, paused_error) = match transport.paused().await {
        Ok(paused) => (Some(paused), None),
        Err(TransportError::Unsupported(message)) => (None, Some(message)),
        Err(e) => return Err(e),
    };
    let mut rows: Vec<QueueRow> = stats
        .iter()
        .cloned()
        .map(|s| QueueRow {
            ready: s.pending.saturating_sub(s.delayed),
            delayed: s.delayed,
            running: s.running,
            failed: s.failed,
            oldest_pending_ms: s.oldest_pending_ms,
            paused: Some(s.paused),
            configured: state.config.queues.contains(&s.queue),
            queue: s.queue,
        })
        .collect();
    for queue in &state.config.queues {
        if !rows.iter().any(|r| r.queue == *queue) {
            rows.push(QueueRow {
                queue: queue.clone(),
                configured: true,
                ..QueueRow::default()
            });
        }
    }
    if let Some(paused) = &paused {
        for row in &mut rows {
            row.paused = Some(paused.contains(&row.queue) || row.paused == Some(true));
        }
    }
    rows.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok((rows, paused_error))
}

/// A listing's query string: `state`, `after`, `limit`, `text`, `queue`, `since`, `until`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ListQuery {
    pub queue: Option<String>,
    pub state: Option<String>,
    pub text: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub after: Option<String>,
    pub limit: Option<String>,
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl ListQuery {
    /// The filter this query names (`state` defaults to `default_state`).
    pub fn filter(&self, default_state: Option<ListState>) -> Result<TaskFilter, ApiError> {
        let queue = nonempty(&self.queue).map(str::to_string);
        if let Some(q) = &queue {
            check_queue(q)?;
        }
        let state = match nonempty(&self.state) {
            None => default_state,
            Some(s) => Some(ListState::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown state {s:?}: expected ready, delayed, running or failed"
                ))
            })?),
        };
        Ok(TaskFilter {
            queue,
            state,
            text: self.text.clone().filter(|t| !t.is_empty()),
            since: nonempty(&self.since).map(parse_time).transpose()?,
            until: nonempty(&self.until).map(parse_time).transpose()?,
        })
    }

    pub fn after(&self) -> Result<Option<TaskId>, ApiError> {
        nonempty(&self.after)
            .map(|a| {
                a.parse()
                    .map_err(|_| ApiError::bad_request(format!("after={a:?} is not a task id")))
            })
            .transpose()
    }

    pub fn limit(&self) -> Result<usize, ApiError> {
        match nonempty(&self.limit) {
            None => Ok(PAGE),
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "limit={l:?}: expected a number from 1 to {MAX_PAGE}"
                ))),
            },
        }
    }
}

/// A time in a query: epoch milliseconds, RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` (UTC; what a
/// `datetime-local` input sends).
pub fn parse_time(text: &str) -> Result<SystemTime, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(rex_transport::task::from_epoch_ms(ms));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc).into());
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().into());
        }
    }
    Err(ApiError::bad_request(format!(
        "{text:?} is not a time: expected epoch milliseconds, RFC 3339 or YYYY-MM-DDTHH:MM (UTC)"
    )))
}

/// `2024-05-01 10:00:00 UTC`.
pub fn format_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// `3.2s`, `5m 3s`, `2h 5m`, `3d 4h`.
pub fn format_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A task as the pages show it.
#[derive(Serialize)]
pub struct TaskView {
    pub id: TaskId,
    pub queue: String,
    pub state: &'static str,
    pub payload: String,
    pub payload_short: String,
    pub attempts: u32,
    pub errors: u32,
    pub crashes: u32,
    pub last_error: Option<String>,
    pub created: String,
    pub run_at: Option<String>,
    pub owner: Option<String>,
    pub history: Vec<AttemptView>,
    /// A completed task's result, pretty JSON.
    pub result: Option<String>,
}

#[derive(Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub owner: String,
    /// From the owner (`host:pid:start:generation`): the host, and the worker process as
    /// `pid N, child #G` (the master's pid and the child's generation under it).
    pub host: Option<String>,
    pub worker: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub started_at: Option<String>,
    pub took: Option<String>,
    pub finished_at: String,
}

impl From<&TaskSummary> for TaskView {
    fn from(t: &TaskSummary) -> Self {
        let compact = serde_json::to_string(&t.payload).unwrap_or_default();
        TaskView {
            id: t.id,
            queue: t.queue.clone(),
            state: t.state.as_str(),
            payload: serde_json::to_string_pretty(&t.payload).unwrap_or_default(),
            payload_short: rex_transport::excerpt(&compact, 120),
            attempts: t.attempts,
            errors: t.errors,
            crashes: t.crashes,
            last_error: t.last_error.clone(),
            created: format_time(t.created_at),
            run_at: t.run_at.map(format_time),
            owner: t.owner.clone(),
            history: t
                .history
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    owner: a.owner.clone(),
                    host: owner_part(&a.owner, 0).map(str::to_string),
                    worker: owner_part(&a.owner, 1)
                        .zip(owner_part(&a.owner, 3))
                        .map(|(pid, generation)| format!("master pid {pid}, child #{generation}")),
                    outcome: serde_json::to_value(a.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    reason: a.reason.clone(),
                    started_at: a
                        .started_at
                        .map(|ms| format_time(rex_transport::task::from_epoch_ms(ms))),
                    took: a.took().map(|d| format_age(d.as_millis() as u64)),
                    finished_at: format_time(rex_transport::task::from_epoch_ms(a.finished_at)),
                })
                .collect(),
            result: t
                .result
                .as_ref()
                .map(|r| serde_json::to_string_pretty(r).unwrap_or_default()),
        }
    }
}

/// Part `i` of an owner name `host:pid:start:generation` (`None` for another form, such as an
/// operator's cancel).
fn owner_part(owner: &str, i: usize) -> Option<&str> {
    let parts: Vec<&str> = owner.split(':').collect();
    (parts.len() == 4 && parts.iter().all(|p| !p.is_empty())).then(|| parts[i])
}

/// A master as the workers page shows it.
#[derive(Serialize)]
pub struct MasterView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub uptime: String,
    pub beat_at: String,
    pub scheduler: bool,
    pub children: Vec<ChildView>,
}

#[derive(Serialize)]
pub struct ChildView {
    pub queue: String,
    pub slot: u32,
    pub pid: Option<u32>,
    pub task: Option<TaskId>,
    pub since: Option<String>,
    pub processed: u64,
    pub restarts: u64,
    pub rss: Option<String>,
}

impl MasterView {
    pub fn new(m: &MasterRecord, now: SystemTime) -> Self {
        let uptime = now.duration_since(m.started_at).unwrap_or(Duration::ZERO);
        MasterView {
            id: m.id.clone(),
            host: m.host.clone(),
            pid: m.pid,
            version: m.version.clone(),
            uptime: format_age(uptime.as_millis() as u64),
            beat_at: format_time(m.beat_at),
            scheduler: m.scheduler,
            children: m
                .children
                .iter()
                .map(|c| ChildView {
                    queue: c.queue.clone(),
                    slot: c.slot,
                    pid: c.pid,
                    task: c.task,
                    since: c.task_since.map(format_time),
                    processed: c.processed,
                    restarts: c.restarts,
                    rss: c
                        .rss_bytes
                        .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))),
                })
                .collect(),
        }
    }
}

/// Every failed task `filter` matches, as a bulk action over it touches them.
pub async fn matching(
    transport: &dyn Transport,
    filter: &TaskFilter,
) -> Result<Vec<TaskId>, TransportError> {
    rex_transport::console::matching_ids(transport, filter).await
}

#[cfg(test)]
mod tests {
    use super::owner_part;

    #[test]
    fn an_owner_names_its_host_master_and_child() {
        let owner = "box:4242:98765:3";
        assert_eq!(owner_part(owner, 0), Some("box"));
        assert_eq!(owner_part(owner, 1), Some("4242"));
        assert_eq!(owner_part(owner, 3), Some("3"));
        assert_eq!(owner_part("", 0), None, "an operator's cancel has no owner");
        assert_eq!(owner_part("host:1:1/w0", 0), None);
    }
}
