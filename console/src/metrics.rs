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
//!   (gauge), and what the children did since their master started (the masters' totals):
//!   `rex_tasks_finished_total{host,queue,outcome}` (counter; succeeded, retried, failed,
//!   crashed), `rex_task_run_seconds{host,queue}` and `rex_task_wait_seconds{host,queue}`
//!   (histograms with fixed buckets, so that every master's add up);
//! * per configured schedule: `rex_schedule_last_fire_timestamp_seconds{schedule,runs}` and
//!   `rex_schedule_paused{schedule,runs}` (gauges).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use rex_transport::history::BUCKET_BOUNDS_MS;
use rex_transport::{Histogram, MasterRecord, TransportError};

use crate::schedules::ScheduleView;
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
struct ScheduleLabel {
    schedule: String,
    /// What it runs (a worker or a command), for people reading the series.
    runs: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostQueueOutcome {
    host: String,
    queue: String,
    outcome: String,
}

/// A histogram whose buckets were counted elsewhere (by the masters), exposed as it is.
#[derive(Clone, Debug, Default)]
struct Counted(Arc<Mutex<Histogram>>);

impl Counted {
    fn add(&self, h: &Histogram) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).add(h);
    }
}

impl TypedMetric for Counted {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Counted {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Per bucket, not cumulative: the encoder adds them up; the last is +Inf.
        let buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_MS
            .iter()
            .map(|ms| *ms as f64 / 1000.0)
            .chain([f64::MAX])
            .zip(h.buckets)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(h.sum_ms as f64 / 1000.0, h.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
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
    let schedules = match crate::schedules::views(&state).await {
        Ok((schedules, _)) => schedules,
        Err(e) => return failure(&e),
    };
    match render(&rows, masters.as_deref(), &schedules) {
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
fn render(
    rows: &[QueueRow],
    masters: Option<&[MasterRecord]>,
    schedules: &[ScheduleView],
) -> Result<String, std::fmt::Error> {
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
    register_schedules(&mut registry, schedules);
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
    let finished = Family::<HostQueueOutcome, Counter>::default();
    let run = Family::<HostQueue, Counted>::default();
    let wait = Family::<HostQueue, Counted>::default();
    let mut per_host: BTreeMap<String, i64> = BTreeMap::new();
    for master in masters {
        *per_host.entry(master.host.clone()).or_default() += 1;
        for totals in &master.totals {
            let c = &totals.counters;
            for (outcome, n) in [
                ("succeeded", c.succeeded),
                ("retried", c.retried),
                ("failed", c.failed),
                ("crashed", c.crashed),
            ] {
                let labels = HostQueueOutcome {
                    host: master.host.clone(),
                    queue: totals.queue.clone(),
                    outcome: outcome.into(),
                };
                finished.get_or_create(&labels).inc_by(n);
            }
            let labels = HostQueue {
                host: master.host.clone(),
                queue: totals.queue.clone(),
            };
            run.get_or_create(&labels).add(&c.run);
            wait.get_or_create(&labels).add(&c.wait);
        }
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
    registry.register(
        "tasks_finished",
        "Attempts that came to an outcome (succeeded, retried, failed, crashed) by host and queue, since their master started",
        finished,
    );
    registry.register_with_unit(
        "task_run",
        "How long attempts ran in the worker, by host and queue, since their master started",
        Unit::Seconds,
        run,
    );
    registry.register_with_unit(
        "task_wait",
        "How long first attempts waited from submission to start, by host and queue, since their master started",
        Unit::Seconds,
        wait,
    );
    registry.register_with_unit(
        "worker_rss",
        "Resident memory of one worker child",
        Unit::Bytes,
        rss,
    );
}

fn register_schedules(registry: &mut Registry, schedules: &[ScheduleView]) {
    let last = Family::<ScheduleLabel, Gauge<f64, AtomicU64>>::default();
    let paused = Family::<ScheduleLabel, Gauge>::default();
    for s in schedules {
        let labels = ScheduleLabel {
            schedule: s.id.clone(),
            runs: s.name.clone(),
        };
        if let Some(ms) = s.last_fire_ms {
            last.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
        if let Some(p) = s.paused {
            paused.get_or_create(&labels).set(i64::from(p));
        }
    }
    registry.register_with_unit(
        "schedule_last_fire_timestamp",
        "When the schedule last fired (Unix time; absent before its first fire)",
        Unit::Seconds,
        last,
    );
    registry.register(
        "schedule_paused",
        "1 when the schedule is paused (absent when the transport cannot tell)",
        paused,
    );
}

fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
