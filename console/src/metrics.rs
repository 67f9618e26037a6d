//! `/metrics`: OpenMetrics text, built with `prometheus-client` from the transport on every
//! scrape (nothing is kept between scrapes). Every metric is listed in `docs/console.md`:
//!
//! * `rex_tasks{queue,state}` — gauge: tasks by queue and state (ready, delayed, running,
//!   failed), for every queue configured or holding tasks;
//! * `rex_queue_oldest_pending_age_seconds{queue}` — gauge: age of the oldest pending task;
//! * `rex_queue_paused{queue}` — gauge: 1 when the queue is paused (absent when the transport
//!   cannot tell);
//! * from the masters' heartbeats (absent when the transport keeps none):
//!   `rex_masters{host}` (gauge), `rex_worker_children_running{host,queue}` (gauge),
//!   `rex_worker_restarts_total{host,queue}` and `rex_worker_processed_total{host,queue}`
//!   (counters, since each master started), `rex_worker_rss_bytes{host,master,queue,slot}`
//!   (gauge).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use rex_transport::{MasterRecord, TransportError};

use crate::server::AppState;
use crate::view::{QueueRow, queue_rows, status_of};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueState {
    queue: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostQueue {
    host: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChildLabel {
    host: String,
    master: String,
    queue: String,
    slot: String,
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let rows = match queue_rows(&state).await {
        Ok((rows, _)) => rows,
        Err(e) => return failure(&e),
    };
    let masters = match state.config.transport.masters().await {
        Ok(masters) => Some(masters),
        Err(TransportError::Unsupported(_)) => None,
        Err(e) => return failure(&e),
    };
    match render(&rows, masters.as_deref()) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response(),
    }
}

fn failure(e: &TransportError) -> Response {
    (
        status_of(e),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        e.to_string(),
    )
        .into_response()
}

/// The exposition of these rows and heartbeats.
fn render(rows: &[QueueRow], masters: Option<&[MasterRecord]>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("rex");
    let tasks = Family::<QueueState, Gauge>::default();
    let oldest = Family::<QueueLabel, Gauge<f64, AtomicU64>>::default();
    let paused = Family::<QueueLabel, Gauge>::default();
    for row in rows {
        for (state, n) in [
            ("ready", row.ready),
            ("delayed", row.delayed),
            ("running", row.running),
            ("failed", row.failed),
        ] {
            let labels = QueueState {
                queue: row.queue.clone(),
                state: state.into(),
            };
            tasks.get_or_create(&labels).set(saturate(n));
        }
        let queue = QueueLabel {
            queue: row.queue.clone(),
        };
        oldest
            .get_or_create(&queue)
            .set(row.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0);
        if let Some(p) = row.paused {
            paused.get_or_create(&queue).set(i64::from(p));
        }
    }
    registry.register("tasks", "Tasks by queue and state", tasks);
    registry.register_with_unit(
        "queue_oldest_pending_age",
        "Age of the oldest pending task of the queue (0 when none)",
        Unit::Seconds,
        oldest,
    );
    registry.register("queue_paused", "1 when the queue is paused", paused);
    if let Some(masters) = masters {
        register_workers(&mut registry, masters);
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

fn register_workers(registry: &mut Registry, masters: &[MasterRecord]) {
    let count = Family::<HostLabel, Gauge>::default();
    let running = Family::<HostQueue, Gauge>::default();
    let restarts = Family::<HostQueue, Counter>::default();
    let processed = Family::<HostQueue, Counter>::default();
    let rss = Family::<ChildLabel, Gauge>::default();
    let mut per_host: BTreeMap<String, i64> = BTreeMap::new();
    for master in masters {
        *per_host.entry(master.host.clone()).or_default() += 1;
        for child in &master.children {
            let labels = HostQueue {
                host: master.host.clone(),
                queue: child.queue.clone(),
            };
            running
                .get_or_create(&labels)
                .inc_by(i64::from(child.pid.is_some()));
            restarts.get_or_create(&labels).inc_by(child.restarts);
            processed.get_or_create(&labels).inc_by(child.processed);
            if let Some(bytes) = child.rss_bytes {
                let labels = ChildLabel {
                    host: master.host.clone(),
                    master: master.id.clone(),
                    queue: child.queue.clone(),
                    slot: child.slot.to_string(),
                };
                rss.get_or_create(&labels).set(saturate(bytes));
            }
        }
    }
    for (host, n) in per_host {
        count.get_or_create(&HostLabel { host }).set(n);
    }
    registry.register(
        "masters",
        "Live masters (heartbeats not expired) by host",
        count,
    );
    registry.register(
        "worker_children_running",
        "Worker children running (with a pid) by host and queue",
        running,
    );
    registry.register(
        "worker_restarts",
        "Restarts of worker children after a death, since their master started",
        restarts,
    );
    registry.register(
        "worker_processed",
        "Tasks finished (any outcome) by worker children, since their master started",
        processed,
    );
    registry.register_with_unit(
        "worker_rss",
        "Resident memory of one worker child",
        Unit::Bytes,
        rss,
    );
}

fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
