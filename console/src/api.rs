//! The JSON API under `/api/` (the pages' live parts use it too). Errors are
//! `{"error": "..."}` with 400 (bad input), 403, 404, 501 (this transport cannot), 503
//! (transport unavailable) or 500.

use axum::Json;
use axum::extract::{Path, Query, State};
use rex_transport::console::{CANCELLED, Cancel};
use rex_transport::{ListState, Selector, TaskFilter, TaskId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::history::HistoryQuery;
use crate::server::AppState;
use crate::view::{ApiError, ListQuery, check_queue, matching, queue_rows};

type ApiResult = Result<Json<Value>, ApiError>;

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// `GET /api/queues`: every queue (configured ∪ holding tasks).
pub async fn queues(State(state): State<AppState>) -> ApiResult {
    let (rows, paused_error) = queue_rows(&state).await?;
    Ok(Json(json!({
        "transport": state.config.transport.describe(),
        "queues": rows,
        "paused_unsupported": paused_error,
    })))
}

/// `GET /api/queues/{q}/tasks?state=&after=&limit=&text=`: one page, by id.
pub async fn queue_tasks(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    check_queue(&queue)?;
    let mut filter = query.filter(Some(ListState::Ready))?;
    filter.queue = Some(queue);
    page(&state, &filter, &query).await
}

async fn page(state: &AppState, filter: &TaskFilter, query: &ListQuery) -> ApiResult {
    let limit = query.limit()?;
    let tasks = state
        .config
        .transport
        .list(filter, query.after()?, limit)
        .await?;
    let next_after = (tasks.len() == limit)
        .then(|| tasks.last().map(|t| t.id))
        .flatten();
    Ok(Json(json!({ "tasks": tasks, "next_after": next_after })))
}

/// `GET /api/history?queue=&minutes=`: every minute of the range, oldest first, of one queue
/// or summed over all.
pub async fn history(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult {
    let (queue, minutes) = (query.queue()?, query.minutes()?);
    let series = crate::history::series(&state, queue, minutes).await?;
    Ok(Json(json!({ "queue": queue, "minutes": *series })))
}

/// `GET /api/schedules`: every schedule with its last and next fire and pause flag.
pub async fn schedules(State(state): State<AppState>) -> ApiResult {
    let (schedules, paused_unsupported) = crate::schedules::views(&state).await?;
    Ok(Json(
        json!({ "schedules": schedules, "paused_unsupported": paused_unsupported }),
    ))
}

/// `POST /api/schedules/{id}/run`, body `{"nonce": "..."}` (optional): one run now, once per
/// nonce. `{"schedule", "task"}`, `task` null when this nonce was enqueued already.
pub async fn run_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let schedule = crate::schedules::find(&state.config, &id)?;
    let run: crate::schedules::RunNow = if body.is_empty() {
        Default::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"nonce\": \"...\"}}: {e}")))?
    };
    let task = crate::schedules::run_now(&state, schedule, run.nonce.as_deref()).await?;
    Ok(Json(json!({ "schedule": id, "task": task })))
}

/// `POST /api/schedules/{id}/pause`.
pub async fn pause_schedule(state: State<AppState>, id: Path<String>) -> ApiResult {
    set_schedule_paused(state, id, true).await
}

/// `POST /api/schedules/{id}/resume`.
pub async fn resume_schedule(state: State<AppState>, id: Path<String>) -> ApiResult {
    set_schedule_paused(state, id, false).await
}

async fn set_schedule_paused(
    State(state): State<AppState>,
    Path(id): Path<String>,
    paused: bool,
) -> ApiResult {
    crate::schedules::find(&state.config, &id)?;
    let changed = state
        .config
        .transport
        .set_schedule_paused(&id, paused)
        .await?;
    Ok(Json(
        json!({ "schedule": id, "paused": paused, "changed": changed }),
    ))
}

/// `GET /api/tasks/{id}`.
pub async fn task(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = task_id(&id)?;
    match state.config.transport.task(id).await? {
        Some(task) => Ok(Json(json!(task))),
        None => Err(ApiError::not_found(format!("no task {id}"))),
    }
}

pub fn task_id(text: &str) -> Result<TaskId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a task id")))
}

/// `GET /api/failed?queue=&text=&since=&until=&after=&limit=`.
pub async fn failed(State(state): State<AppState>, Query(query): Query<ListQuery>) -> ApiResult {
    let filter = failed_filter(&query)?;
    page(&state, &filter, &query).await
}

pub fn failed_filter(query: &ListQuery) -> Result<TaskFilter, ApiError> {
    let mut filter = query.filter(Some(ListState::Failed))?;
    filter.state = Some(ListState::Failed);
    Ok(filter)
}

/// `GET /api/failed/count?...`: what a bulk action over this filter would touch.
pub async fn failed_count(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    let filter = failed_filter(&query)?;
    let count = state.config.transport.count(&filter).await?;
    Ok(Json(json!({ "count": count })))
}

/// `POST /api/queues/{q}/pause`.
pub async fn pause(state: State<AppState>, queue: Path<String>) -> ApiResult {
    set_paused(state, queue, true).await
}

/// `POST /api/queues/{q}/resume`.
pub async fn resume(state: State<AppState>, queue: Path<String>) -> ApiResult {
    set_paused(state, queue, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    paused: bool,
) -> ApiResult {
    check_queue(&queue)?;
    let changed = state.config.transport.set_paused(&queue, paused).await?;
    Ok(Json(
        json!({ "queue": queue, "paused": paused, "changed": changed }),
    ))
}

/// `POST /api/tasks/{id}/retry` (a failed task back to pending).
pub async fn retry_task(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = task_id(&id)?;
    let retried = state
        .config
        .transport
        .retry_failed(&Selector::Ids(vec![id]))
        .await?
        .len();
    Ok(Json(json!({ "retried": retried })))
}

/// `POST /api/tasks/{id}/cancel`: `{"outcome": "cancelled"}` (it was pending),
/// `{"outcome": "requested", "owner"}` (running: its master stops it), or 409 when it has
/// finished (`{"error"}`), 404 when there is no such task.
pub async fn cancel_task(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = task_id(&id)?;
    Ok(Json(json!(cancel(&state, id).await?)))
}

/// Cancel task `id` (the page's button and the API).
pub async fn cancel(state: &AppState, id: TaskId) -> Result<Cancel, ApiError> {
    let done =
        rex_transport::console::cancel(state.config.transport.as_ref(), id, CANCELLED).await?;
    state.snapshot.invalidate();
    match done {
        Cancel::NotFound => Err(ApiError::not_found(format!("no task {id}"))),
        Cancel::Finished { state: s } => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!("task {id} is {} and cannot be cancelled", s.as_str()),
        )),
        done => Ok(done),
    }
}

/// `POST /api/tasks/{id}/purge` (a failed task deleted).
pub async fn purge_task(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = task_id(&id)?;
    let purged = state.config.transport.purge_failed(&[id]).await?;
    Ok(Json(json!({ "purged": purged })))
}

/// The body of a bulk action: the ids, or a filter (its state is always `failed`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    pub ids: Option<Vec<TaskId>>,
    pub filter: Option<TaskFilter>,
}

impl Bulk {
    /// The ids to touch: those given, or every failed task the filter matches.
    pub async fn ids(self, state: &AppState) -> Result<Vec<TaskId>, ApiError> {
        match (self.ids, self.filter) {
            (Some(ids), None) => Ok(ids),
            (None, Some(mut filter)) => {
                if let Some(q) = &filter.queue {
                    check_queue(q)?;
                }
                filter.state = Some(ListState::Failed);
                Ok(matching(state.config.transport.as_ref(), &filter).await?)
            }
            _ => Err(ApiError::bad_request(
                "expected a body with either \"ids\" or \"filter\"",
            )),
        }
    }
}

fn bulk_body(
    body: Result<Json<Bulk>, axum::extract::rejection::JsonRejection>,
) -> Result<Bulk, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `POST /api/failed/retry` with `{"ids": [...]}` or `{"filter": {...}}`.
pub async fn retry_failed(
    State(state): State<AppState>,
    body: Result<Json<Bulk>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let ids = bulk_body(body)?.ids(&state).await?;
    let retried = if ids.is_empty() {
        0
    } else {
        state
            .config
            .transport
            .retry_failed(&Selector::Ids(ids.clone()))
            .await?
            .len()
    };
    Ok(Json(json!({ "matched": ids.len(), "retried": retried })))
}

/// `POST /api/failed/purge` with `{"ids": [...]}` or `{"filter": {...}}`.
pub async fn purge_failed(
    State(state): State<AppState>,
    body: Result<Json<Bulk>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let ids = bulk_body(body)?.ids(&state).await?;
    let purged = if ids.is_empty() {
        0
    } else {
        state.config.transport.purge_failed(&ids).await?
    };
    Ok(Json(json!({ "matched": ids.len(), "purged": purged })))
}

/// `GET /api/masters`: the masters' latest heartbeats.
pub async fn masters(State(state): State<AppState>) -> ApiResult {
    let masters = state.config.transport.masters().await?;
    Ok(Json(json!({ "masters": masters })))
}
