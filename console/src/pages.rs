//! The HTML pages (server-rendered with minijinja, auto-escaped) and the form posts of their
//! buttons, which answer with a redirect (303) or a page. Where the transport cannot do
//! something (`TransportError::Unsupported`), the page says so with the error's text.

use std::time::SystemTime;

use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value, context};
use rex_transport::{ListState, Selector, TaskFilter, TaskId, TransportError};

use crate::api::failed_filter;
use crate::history::HistoryQuery;
use crate::server::{AppState, Shared};
use crate::view::{
    ApiError, ListQuery, MasterView, TaskView, check_queue, format_age, matching, queue_rows,
};

pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../templates/base.html")),
        ("overview.html", include_str!("../templates/overview.html")),
        ("queue.html", include_str!("../templates/queue.html")),
        ("task.html", include_str!("../templates/task.html")),
        ("failed.html", include_str!("../templates/failed.html")),
        ("confirm.html", include_str!("../templates/confirm.html")),
        ("workers.html", include_str!("../templates/workers.html")),
        (
            "schedules.html",
            include_str!("../templates/schedules.html"),
        ),
        ("error.html", include_str!("../templates/error.html")),
    ] {
        // The templates are compiled in: a syntax error fails the tests, not a user.
        if let Err(e) = env.add_template(name, source) {
            eprintln!("console template {name}: {e}");
        }
    }
    env.add_filter("age", |ms: Option<u64>| {
        ms.map(format_age).unwrap_or_else(|| "-".into())
    });
    env.add_filter("ms", |ms: Option<f64>| match ms {
        None => "-".to_string(),
        Some(ms) if ms < 1000.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{:.2} s", ms / 1000.0),
    });
    env
}

fn render(state: &Shared, status: StatusCode, name: &str, ctx: Value) -> Response {
    let common = context! {
        project => state.config.project,
        transport => state.config.transport.describe(),
        read_only => state.config.read_only,
        csrf => state.csrf,
    };
    let full = context! { ..ctx, ..common };
    match state
        .templates
        .get_template(name)
        .and_then(|t| t.render(full))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot render {name}: {e}"),
        )
            .into_response(),
    }
}

fn error_page(state: &Shared, status: StatusCode, message: &str) -> Response {
    render(
        state,
        status,
        "error.html",
        context! { status => status.as_u16(), message => message },
    )
}

fn api_error_page(state: &Shared, e: ApiError) -> Response {
    error_page(state, e.status, &e.message)
}

/// What the page shows instead of data the transport could not give.
fn unsupported(e: &TransportError) -> Option<String> {
    matches!(e, TransportError::Unsupported(_)).then(|| e.to_string())
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub async fn not_found(State(state): State<AppState>) -> Response {
    error_page(&state, StatusCode::NOT_FOUND, "There is no such page.")
}

/// `/`: every queue, live-updated by `console.js` from `/api/queues`.
pub async fn overview(State(state): State<AppState>) -> Response {
    match queue_rows(&state).await {
        Ok((queues, paused_error)) => render(
            &state,
            StatusCode::OK,
            "overview.html",
            context! { queues, paused_error },
        ),
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `/charts/throughput.svg?queue=&minutes=`: the outcomes per minute, stacked bars drawn
/// here. A failure is drawn too (the page shows it where the chart would be).
pub async fn throughput_chart(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let svg = |status: StatusCode, body: String| {
        (
            status,
            [
                (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    };
    let (queue, minutes) = match (query.queue(), query.minutes()) {
        (Ok(queue), Ok(minutes)) => (queue, minutes),
        (Err(e), _) | (_, Err(e)) => return svg(e.status, message_svg(&e.message)),
    };
    match crate::history::series(&state, queue, minutes).await {
        Ok(series) => {
            let title = format!("Throughput of {}", queue.unwrap_or("every queue"));
            svg(StatusCode::OK, crate::history::chart(&series, &title))
        }
        Err(e) => svg(crate::view::status_of(&e), message_svg(&e.to_string())),
    }
}

/// A chart-sized image that says `message` (escaped by minijinja's HTML escaping rules,
/// which cover XML text).
fn message_svg(message: &str) -> String {
    let text = minijinja::HtmlEscape(message).to_string();
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="720" height="40" font-family="sans-serif" font-size="12"><text x="0" y="24">No throughput history: {text}</text></svg>"#
    )
}

/// `/queues/{queue}?state=&after=&text=`.
pub async fn queue(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(e) = check_queue(&queue) {
        return api_error_page(&state, e);
    }
    let mut filter = match query.filter(Some(ListState::Ready)) {
        Ok(filter) => filter,
        Err(e) => return api_error_page(&state, e),
    };
    filter.queue = Some(queue.clone());
    let current = filter.state.unwrap_or(ListState::Ready).as_str();
    let transport = &state.config.transport;
    let paused = match transport.paused().await {
        Ok(paused) => Some(paused.contains(&queue)),
        Err(_) => None,
    };
    let listing = listing(&state, &filter, &query).await;
    // The minutes of the last hour in which anything ran, newest first.
    let (recent, history_problem) =
        match crate::history::series(&state, Some(&queue), crate::history::DEFAULT_MINUTES).await {
            Ok(series) => {
                let active: Vec<_> = series
                    .iter()
                    .rev()
                    .filter(|m| m.processed > 0)
                    .cloned()
                    .collect();
                (active, None)
            }
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
    let tabs: Vec<&str> = ListState::ALL.iter().map(|s| s.as_str()).collect();
    let keeps_completed = state.config.transport.keeps_completed();
    let transport = state.config.transport.describe();
    render(
        &state,
        StatusCode::OK,
        "queue.html",
        context! { queue, current, tabs, paused, keeps_completed, transport, text => filter.text, recent, history_problem, ..listing },
    )
}

/// One page of `filter`, or the reason there is none: `tasks`, `next_after`, `unsupported`.
async fn listing(state: &Shared, filter: &TaskFilter, query: &ListQuery) -> Value {
    let (after, limit) = match (query.after(), query.limit()) {
        (Ok(after), Ok(limit)) => (after, limit),
        (Err(e), _) | (_, Err(e)) => return context! { problem => e.message },
    };
    match state.config.transport.list(filter, after, limit).await {
        Ok(tasks) => {
            let next_after = (tasks.len() == limit)
                .then(|| tasks.last().map(|t| t.id))
                .flatten();
            let tasks: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
            context! { tasks, next_after, after }
        }
        Err(e) => context! { problem => e.to_string(), unsupported => unsupported(&e) },
    }
}

/// `/tasks/{id}`.
pub async fn task(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match crate::api::task_id(&id) {
        Ok(id) => id,
        Err(e) => return api_error_page(&state, e),
    };
    match state.config.transport.task(id).await {
        Ok(Some(task)) => render(
            &state,
            StatusCode::OK,
            "task.html",
            context! { task => TaskView::from(&task) },
        ),
        Ok(None) => error_page(&state, StatusCode::NOT_FOUND, &format!("No task {id}.")),
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `/failed?queue=&text=&since=&until=&after=`.
pub async fn failed(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Response {
    let filter = match failed_filter(&query) {
        Ok(filter) => filter,
        Err(e) => return api_error_page(&state, e),
    };
    let listing = listing(&state, &filter, &query).await;
    let count = state.config.transport.count(&filter).await.ok();
    render(
        &state,
        StatusCode::OK,
        "failed.html",
        context! { q => query, count, ..listing },
    )
}

/// `POST /queues/{queue}/pause` (form).
pub async fn pause(state: State<AppState>, queue: Path<String>) -> Response {
    set_paused(state, queue, true).await
}

/// `POST /queues/{queue}/resume` (form).
pub async fn resume(state: State<AppState>, queue: Path<String>) -> Response {
    set_paused(state, queue, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    paused: bool,
) -> Response {
    if let Err(e) = check_queue(&queue) {
        return api_error_page(&state, e);
    }
    match state.config.transport.set_paused(&queue, paused).await {
        Ok(_) => redirect(&format!("/queues/{queue}")),
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `/schedules?ran=ID&task=N`: every schedule, with run now and pause / resume; after a run
/// now, what it enqueued.
pub async fn schedules(
    State(state): State<AppState>,
    Query(ran): Query<std::collections::HashMap<String, String>>,
) -> Response {
    match crate::schedules::views(&state).await {
        Ok((schedules, paused_problem)) => {
            // A fresh nonce per form: a click is enqueued once, however often it is sent.
            let nonces: Vec<String> = schedules
                .iter()
                .map(|_| crate::schedules::nonce())
                .collect();
            render(
                &state,
                StatusCode::OK,
                "schedules.html",
                context! {
                    schedules, nonces, paused_problem,
                    ran => ran.get("ran"), ran_task => ran.get("task"),
                },
            )
        }
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `POST /schedules/{id}/run` (form: `csrf`, `nonce`).
pub async fn run_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let schedule = match crate::schedules::find(&state.config, &id) {
        Ok(schedule) => schedule,
        Err(e) => return api_error_page(&state, e),
    };
    let nonce = fields
        .iter()
        .find(|(name, _)| name == "nonce")
        .map(|(_, v)| v.as_str());
    match crate::schedules::run_now(&state, schedule, nonce).await {
        Ok(task) => {
            let task = task.map_or_else(|| "again".to_string(), |t| t.to_string());
            redirect(&format!("/schedules?ran={id}&task={task}"))
        }
        Err(e) => api_error_page(&state, e),
    }
}

/// `POST /schedules/{id}/pause` (form).
pub async fn pause_schedule(state: State<AppState>, id: Path<String>) -> Response {
    set_schedule_paused(state, id, true).await
}

/// `POST /schedules/{id}/resume` (form).
pub async fn resume_schedule(state: State<AppState>, id: Path<String>) -> Response {
    set_schedule_paused(state, id, false).await
}

async fn set_schedule_paused(
    State(state): State<AppState>,
    Path(id): Path<String>,
    paused: bool,
) -> Response {
    if let Err(e) = crate::schedules::find(&state.config, &id) {
        return api_error_page(&state, e);
    }
    match state
        .config
        .transport
        .set_schedule_paused(&id, paused)
        .await
    {
        Ok(_) => redirect("/schedules"),
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `POST /tasks/{id}/retry` (form).
pub async fn retry_task(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match crate::api::task_id(&id) {
        Ok(id) => id,
        Err(e) => return api_error_page(&state, e),
    };
    match state
        .config
        .transport
        .retry_failed(&Selector::Ids(vec![id]))
        .await
    {
        Ok(_) => redirect(&format!("/tasks/{id}")),
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `POST /tasks/{id}/cancel` (form): back to the task, which shows what became of it.
pub async fn cancel_task(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match crate::api::task_id(&id) {
        Ok(id) => id,
        Err(e) => return api_error_page(&state, e),
    };
    match crate::api::cancel(&state, id).await {
        Ok(_) => redirect(&format!("/tasks/{id}")),
        Err(e) => api_error_page(&state, e),
    }
}

/// `POST /tasks/{id}/purge` (form).
pub async fn purge_task(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match crate::api::task_id(&id) {
        Ok(id) => id,
        Err(e) => return api_error_page(&state, e),
    };
    match state.config.transport.purge_failed(&[id]).await {
        Ok(_) => redirect("/failed"),
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `POST /failed/action`: `action` (retry|purge), `scope` (selected: the `ids` fields;
/// filter: every failed task the `queue`/`text`/`since`/`until` fields match). Without
/// `confirmed`, answers with a confirmation page naming how many tasks it will touch.
pub async fn failed_action(
    State(state): State<AppState>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let action = field("action").unwrap_or_default();
    if action != "retry" && action != "purge" {
        return error_page(&state, StatusCode::BAD_REQUEST, "unknown action");
    }
    let query = ListQuery {
        queue: field("queue"),
        text: field("text"),
        since: field("since"),
        until: field("until"),
        ..ListQuery::default()
    };
    let by_filter = field("scope").as_deref() == Some("filter");
    let mut ids: Vec<TaskId> = Vec::new();
    for (key, value) in &fields {
        if key == "ids" {
            match crate::api::task_id(value) {
                Ok(id) => ids.push(id),
                Err(e) => return api_error_page(&state, e),
            }
        }
    }
    let filter = match failed_filter(&query) {
        Ok(filter) => filter,
        Err(e) => return api_error_page(&state, e),
    };
    let transport = state.config.transport.as_ref();
    if field("confirmed").is_none() {
        let count = if by_filter {
            match transport.count(&filter).await {
                Ok(n) => n,
                Err(e) => return error_page(&state, crate::view::status_of(&e), &e.to_string()),
            }
        } else {
            ids.len() as u64
        };
        return render(
            &state,
            StatusCode::OK,
            "confirm.html",
            context! { action, by_filter, count, ids, q => query },
        );
    }
    let result = async {
        if by_filter {
            ids = matching(transport, &filter).await?;
        }
        if ids.is_empty() {
            return Ok(0);
        }
        if action == "retry" {
            (transport.retry_failed(&Selector::Ids(ids.clone())).await)
                .map(|moved| moved.len() as u64)
        } else {
            transport.purge_failed(&ids).await
        }
    }
    .await;
    match result {
        Ok(done) => render(
            &state,
            StatusCode::OK,
            "confirm.html",
            context! { action, done, q => query },
        ),
        Err(e) => error_page(&state, crate::view::status_of(&e), &e.to_string()),
    }
}

/// `/workers`: the masters' heartbeats.
pub async fn workers(State(state): State<AppState>) -> Response {
    let now = SystemTime::now();
    match state.config.transport.masters().await {
        Ok(masters) => {
            let masters: Vec<MasterView> =
                masters.iter().map(|m| MasterView::new(m, now)).collect();
            render(&state, StatusCode::OK, "workers.html", context! { masters })
        }
        Err(e) => render(
            &state,
            StatusCode::OK,
            "workers.html",
            context! { problem => e.to_string(), unsupported => unsupported(&e) },
        ),
    }
}
