//! `GET /api/events[?queue=Q]`: the transport's lifecycle events as Server-Sent Events, one
//! SSE event per task event (`event:` its kind, `data:` the JSON `rex asynctask-events --json`
//! prints), until the client goes. A subscription that cannot be made is an API error (503
//! when the transport is unavailable; `EventSource` does not retry it); one that fails later
//! ends the stream with an `error` event, and `EventSource` reconnects by itself. At most
//! [`MAX_STREAMS`] at once (then 503).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use rex_transport::{EventFeed, TaskEvent};
use serde::Deserialize;

use crate::server::AppState;
use crate::view::{ApiError, check_queue};

#[derive(Deserialize)]
pub struct EventsQuery {
    queue: Option<String>,
}

/// Event streams a console serves at once: each holds a subscription of its own (on
/// PostgreSQL, a connection), so a page left open in many tabs must not exhaust the server.
const MAX_STREAMS: usize = 32;

/// Counts an open stream until dropped.
struct Open(AppState);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the stream holds between two events.
struct Following {
    _open: Open,
    feed: EventFeed,
    pending: VecDeque<TaskEvent>,
    queue: Option<String>,
    ended: bool,
}

pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let queue = query.queue.filter(|q| !q.is_empty());
    if let Some(queue) = &queue {
        check_queue(queue)?;
    }
    if state.streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        state.streams.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} event streams are open already"),
        ));
    }
    let open = Open(state.clone());
    let feed = state.config.transport.follow_events().await?;
    let following = Following {
        _open: open,
        feed,
        pending: VecDeque::new(),
        queue,
        ended: false,
    };
    let stream = futures_util::stream::unfold(following, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                let sse = Event::default()
                    .event(event.event.as_str())
                    .data(serde_json::to_string(&event).unwrap_or_default());
                return Some((Ok(sse), f));
            }
            if f.ended {
                return None;
            }
            match f.feed.recv().await {
                Some(Ok(batch)) => f.pending.extend(
                    batch
                        .into_iter()
                        .filter(|e| f.queue.as_ref().is_none_or(|q| *q == e.queue)),
                ),
                Some(Err(e)) => {
                    f.ended = true;
                    let sse = Event::default().event("error").data(e.to_string());
                    return Some((Ok(sse), f));
                }
                None => return None,
            }
        }
    });
    // Comments every 15 s keep proxies from closing an idle stream.
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
