//! The JSON API and `/metrics` over every transport: memory, SQLite, and each configured
//! server (`REX_TEST_PGSQL`, `REX_TEST_REDIS`, `REX_TEST_AMQP`; skipped when unset), each
//! under a namespace of its own. The other tests of this crate check the pages in depth on
//! the memory transport; these check that what the console reads means the same on each.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{
    ChildRecord, Counters, HistoryRow, Lease, MasterRecord, QueueTotals, SubmitOptions, Transport,
    normalize_payload,
};
use serde_json::{Value, json};
use support::Harness;

/// (name, transport) for every transport this run can reach.
fn transports(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn Transport>)> {
    let tag: String = std::iter::repeat_with(fastrand::lowercase)
        .take(10)
        .collect();
    let mut all: Vec<(&'static str, Arc<dyn Transport>)> = vec![
        (
            "memory",
            Arc::new(rex_transport::memory::MemoryTransport::new()),
        ),
        (
            "sqlite",
            open(&format!("sqlite:{}", dir.join("tasks.db").display())),
        ),
    ];
    for (name, var, param) in [
        ("pgsql", "REX_TEST_PGSQL", "schema"),
        ("redis", "REX_TEST_REDIS", "key_prefix"),
        ("amqp", "REX_TEST_AMQP", "prefix"),
    ] {
        match std::env::var(var).ok().filter(|uri| !uri.is_empty()) {
            Some(uri) => {
                let sep = if uri.contains('?') { '&' } else { '?' };
                all.push((name, open(&format!("{uri}{sep}{param}=rex_console_{tag}"))));
            }
            None => eprintln!("{name}: skipped ({var} is not set)"),
        }
    }
    all
}

fn open(uri: &str) -> Arc<dyn Transport> {
    rex_transport::open(uri).unwrap_or_else(|e| panic!("open {uri}: {e}"))
}

fn row<'a>(queues: &'a Value, queue: &str) -> &'a Value {
    queues["queues"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["queue"] == queue))
        .unwrap_or_else(|| panic!("no row for {queue} in {queues}"))
}

/// The value of one sample of a parsed scrape.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_metrics_mean_the_same_on_every_transport() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, transport) in transports(dir.path()) {
        eprintln!("{name}");
        check(name, Harness::over(transport, |_| {})).await;
    }
}

async fn check(name: &str, h: Harness) {
    // emails: 3 ready, 1 delayed, 1 running, 2 failed (one of them matching "timeout").
    for n in 0..3 {
        h.submit("emails", json!({ "n": n })).await;
    }
    let later = SystemTime::now() + Duration::from_secs(3600);
    let delayed = SubmitOptions {
        run_at: Some(later),
        ..SubmitOptions::default()
    };
    h.transport
        .submit(
            "emails",
            normalize_payload(json!({"later": true})).expect("payload"),
            &delayed,
        )
        .await
        .expect("submit");
    let timeout = h
        .failed("reports", json!({"r": 1}), "timeout after 5s")
        .await;
    let crashed = h
        .failed("reports", json!({"r": 2}), "killed by SIGKILL")
        .await;
    let running = h
        .transport
        .claim("emails", "box:7:1/w0", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("a ready task");

    let queues = h.get("/api/queues").await;
    assert_eq!(queues.status, 200, "{name}: {}", queues.body);
    let queues = queues.json();
    let emails = row(&queues, "emails");
    assert_eq!(
        (&emails["ready"], &emails["delayed"], &emails["running"]),
        (&json!(2), &json!(1), &json!(1)),
        "{name}: {emails}"
    );
    assert_eq!(row(&queues, "reports")["failed"], 2, "{name}: {queues}");
    assert_eq!(
        row(&queues, "idle")["ready"],
        0,
        "{name}: a configured queue"
    );

    // A listing by state, a lookup with its history, a search by error text.
    let failed = h.get("/api/queues/reports/tasks?state=failed").await;
    assert_eq!(failed.status, 200, "{name}: {}", failed.body);
    let ids: Vec<i64> = failed.json()["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect();
    assert_eq!(ids, [timeout, crashed], "{name}: by id");
    let task = h.get(&format!("/api/tasks/{crashed}")).await.json();
    assert_eq!(task["state"], "failed", "{name}: {task}");
    assert_eq!(
        task["history"][0]["reason"], "killed by SIGKILL",
        "{name}: {task}"
    );
    let count = h.get("/api/failed/count?text=timeout").await.json();
    assert_eq!(count["count"], 1, "{name}: {count}");

    // A bulk retry of what the filter matches only.
    let retried = h
        .post_json("/api/failed/retry", r#"{"filter": {"text": "timeout"}}"#)
        .await;
    assert_eq!(retried.status, 200, "{name}: {}", retried.body);
    assert_eq!(retried.json()["retried"], 1, "{name}: {}", retried.body);
    let queues = h.get("/api/queues").await.json();
    let reports = row(&queues, "reports");
    assert_eq!(
        (&reports["ready"], &reports["failed"]),
        (&json!(1), &json!(1)),
        "{name}: {reports}"
    );

    // Pause and resume.
    let paused = h.post_json("/api/queues/emails/pause", "").await;
    assert_eq!(paused.status, 200, "{name}: {}", paused.body);
    assert_eq!(
        row(&h.get("/api/queues").await.json(), "emails")["paused"],
        true,
        "{name}"
    );

    // A master's heartbeat.
    let now = SystemTime::now();
    h.transport
        .beat(&MasterRecord {
            id: "box:7:1".into(),
            host: "box".into(),
            pid: 7,
            version: "0.1.0".into(),
            started_at: now,
            beat_at: now,
            expires_at: now + Duration::from_secs(60),
            scheduler: false,
            children: vec![ChildRecord {
                queue: "emails".into(),
                pid: Some(8),
                task: Some(running.id),
                task_since: Some(now),
                processed: 3,
                ..ChildRecord::default()
            }],
            totals: vec![QueueTotals {
                queue: "emails".into(),
                counters: counters(),
            }],
        })
        .await
        .expect("beat");
    let masters = h.get("/api/masters").await.json();
    assert_eq!(
        masters["masters"][0]["children"][0]["task"], running.id,
        "{name}: {masters}"
    );

    let metrics = h.get("/metrics").await;
    assert_eq!(metrics.status, 200, "{name}: {}", metrics.body);
    let scrape = prometheus_parse::Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_string())))
        .expect("OpenMetrics text");
    let value = |metric: &str, labels: &[(&str, &str)]| sample(&scrape, metric, labels);
    assert_eq!(
        value("rex_tasks", &[("queue", "emails"), ("state", "ready")]),
        Some(2.0),
        "{name}"
    );
    assert_eq!(
        value("rex_tasks", &[("queue", "emails"), ("state", "delayed")]),
        Some(1.0),
        "{name}"
    );
    assert_eq!(
        value("rex_tasks", &[("queue", "reports"), ("state", "failed")]),
        Some(1.0),
        "{name}"
    );
    assert_eq!(
        value("rex_queue_paused", &[("queue", "emails")]),
        Some(1.0),
        "{name}"
    );
    assert_eq!(
        value("rex_masters", &[("host", "box")]),
        Some(1.0),
        "{name}"
    );
    assert_eq!(
        value(
            "rex_worker_processed_total",
            &[("host", "box"), ("queue", "emails")]
        ),
        Some(3.0),
        "{name}"
    );

    assert_eq!(
        value(
            "rex_tasks_finished_total",
            &[("host", "box"), ("queue", "emails"), ("outcome", "crashed")]
        ),
        Some(1.0),
        "{name}"
    );
    // 3 runs of 20 ms: all in the buckets up to 50 ms, none up to 10 ms.
    let run = scrape
        .samples
        .iter()
        .find(|s| s.metric == "rex_task_run_seconds" && s.labels.get("queue") == Some("emails"));
    let Some(prometheus_parse::Value::Histogram(buckets)) = run.map(|s| &s.value) else {
        panic!("{name}: no run time histogram: {run:?}");
    };
    let below = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
    assert_eq!(
        (below(0.01), below(0.05), below(f64::INFINITY)),
        (Some(0.0), Some(3.0), Some(3.0)),
        "{name}: {buckets:?}"
    );

    // Throughput history, as the masters record it. The minute is taken now, not from `now`
    // above: the window the API returns ends at the current minute, which may have moved on.
    let minute = rex_transport::history::minute_of(SystemTime::now());
    h.transport
        .record_history(
            &format!("console-test-{}", fastrand::u64(..)),
            &[HistoryRow {
                queue: "emails".into(),
                minute,
                counters: counters(),
            }],
        )
        .await
        .expect("record history");
    let history = h.get("/api/history?queue=emails&minutes=5").await;
    assert_eq!(history.status, 200, "{name}: {}", history.body);
    let minutes = history.json()["minutes"].clone();
    assert_eq!(
        minutes.as_array().map(Vec::len),
        Some(5),
        "{name}: {minutes}"
    );
    // The recorded minute is the window's last, or (had the minute turned since) the one before.
    let recorded = minutes
        .as_array()
        .and_then(|all| all.iter().find(|m| m["minute"] == minute))
        .unwrap_or_else(|| panic!("{name}: minute {minute} missing: {minutes}"));
    assert_eq!(recorded["processed"], 6, "{name}: {minutes}");
    assert_eq!(recorded["crashed"], 1, "{name}: {minutes}");
    let chart = h.get("/charts/throughput.svg?queue=emails&minutes=5").await;
    assert_eq!(chart.status, 200, "{name}: {}", chart.body);
    assert!(
        chart.body.contains(r#"data-total="6""#),
        "{name}: {}",
        chart.body
    );

    let resumed = h.post_json("/api/queues/emails/resume", "").await;
    assert_eq!(resumed.status, 200, "{name}: {}", resumed.body);
    let lease = Lease {
        id: running.id,
        token: running.lease_token,
    };
    assert!(
        h.transport.complete(&lease, &[]).await.expect("complete"),
        "{name}"
    );
    h.transport.forget_master("box:7:1").await.expect("forget");

    // Schedules: run now once per click, pause and resume.
    let schedule = support::SCHEDULE;
    let resumed = h
        .post_json(&format!("/api/schedules/{schedule}/resume"), "")
        .await;
    assert_eq!(resumed.status, 200, "{name}: {}", resumed.body);
    let listed = h.get("/api/schedules").await.json();
    let row = &listed["schedules"][0];
    assert_eq!(
        (&row["id"], &row["paused"], &row["last_fire"]),
        (&json!(schedule), &json!(false), &Value::Null),
        "{name}: {listed}"
    );
    assert!(row["next_fire_ms"].is_i64(), "{name}: {listed}");
    let before = row_of(&h, "reports").await["ready"].as_u64().unwrap_or(0);
    let click = r#"{"nonce": "click-1"}"#;
    let first = h
        .post_json(&format!("/api/schedules/{schedule}/run"), click)
        .await;
    assert_eq!(first.status, 200, "{name}: {}", first.body);
    assert!(first.json()["task"].is_i64(), "{name}: {}", first.body);
    let again = h
        .post_json(&format!("/api/schedules/{schedule}/run"), click)
        .await;
    assert_eq!(again.json()["task"], Value::Null, "{name}: {}", again.body);
    let after = row_of(&h, "reports").await["ready"].as_u64().unwrap_or(0);
    assert_eq!(after, before + 1, "{name}: one task per click");
    let paused = h
        .post_json(&format!("/api/schedules/{schedule}/pause"), "")
        .await;
    assert_eq!(paused.json()["changed"], true, "{name}: {}", paused.body);
    assert_eq!(
        h.get("/api/schedules").await.json()["schedules"][0]["paused"],
        true,
        "{name}"
    );
    let metrics = h.get("/metrics").await;
    assert!(
        metrics.body.contains(&format!(
            r#"rex_schedule_paused{{schedule="{schedule}",runs="report_worker"}} 1"#
        )),
        "{name}: {}",
        metrics.body
    );
    let resumed = h
        .post_json(&format!("/api/schedules/{schedule}/resume"), "")
        .await;
    assert_eq!(resumed.json()["changed"], true, "{name}: {}", resumed.body);
}

/// The `/api/queues` row of `queue`.
async fn row_of(h: &Harness, queue: &str) -> Value {
    row(&h.get("/api/queues").await.json(), queue).clone()
}

/// What a master's children did to `emails`: 3 successes of 20 ms, a retry, a failure and a
/// crash.
fn counters() -> Counters {
    let mut counters = Counters {
        succeeded: 3,
        retried: 1,
        failed: 1,
        crashed: 1,
        ..Counters::default()
    };
    for _ in 0..3 {
        counters.run.observe(Duration::from_millis(20));
    }
    counters
}
