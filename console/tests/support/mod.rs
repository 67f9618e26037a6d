//! Drives the console's router in-process (tower `oneshot`), over a memory transport unless a
//! test gives another.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use rex_console::{Config, Console};
use rex_transport::memory::MemoryTransport;
use rex_transport::{Failure, Lease, SubmitOptions, TaskId, Transport};
use serde_json::Value;
use tower::ServiceExt;

pub const CSRF: &str = "test-csrf-token";

pub struct Harness {
    pub transport: Arc<dyn Transport>,
    pub console: Console,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

pub fn config(transport: Arc<dyn Transport>) -> Config {
    Config {
        transport,
        queues: vec!["emails".into(), "idle".into()],
        read_only: false,
        token: None,
        bind: "127.0.0.1:0".parse().expect("address"),
        project: "rex.test".into(),
        schedules: vec![schedule()],
    }
}

/// The id of [`schedule`].
pub const SCHEDULE: &str = "0badc0de";

/// A schedule that fires every 5 minutes into `reports`.
pub fn schedule() -> rex_console::Schedule {
    rex_console::Schedule {
        id: SCHEDULE.into(),
        name: "report_worker".into(),
        queue: "reports".into(),
        rule: r#"{"minute":"*/5"}"#.into(),
        payload: rex_transport::normalize_payload(serde_json::json!({"from": "schedule"}))
            .expect("a payload"),
        next_fire: std::sync::Arc::new(|after| {
            let ms = rex_transport::task::to_epoch_ms(after);
            let step = 5 * 60_000;
            Some(rex_transport::task::from_epoch_ms((ms / step + 1) * step))
        }),
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(change: impl FnOnce(&mut Config)) -> Self {
        Self::over(Arc::new(MemoryTransport::new()), change)
    }

    /// A console over `transport`, its config changed by `change`.
    pub fn over(transport: Arc<dyn Transport>, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = config(transport.clone());
        change(&mut config);
        let console = Console::with_csrf(config, CSRF.into());
        Harness { transport, console }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .console
            .router()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("a body");
        Reply {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).expect("UTF-8"),
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).expect("request"))
            .await
    }

    /// An API POST with the CSRF header and a JSON body.
    pub async fn post_json(&self, uri: &str, body: &str) -> Reply {
        self.send(
            Request::post(uri)
                .header("x-csrf-token", CSRF)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    /// A form POST (the caller includes `csrf=` or not).
    pub async fn post_form(&self, uri: &str, form: &str) -> Reply {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.to_string()))
                .expect("request"),
        )
        .await
    }

    pub async fn submit(&self, queue: &str, payload: Value) -> TaskId {
        let payload = rex_transport::normalize_payload(payload).expect("a payload");
        self.transport
            .submit(queue, payload, &SubmitOptions::default())
            .await
            .expect("submit")
            .expect("an id")
    }

    /// Submit a task and fail it for good with `reason` (a crash).
    pub async fn failed(&self, queue: &str, payload: Value, reason: &str) -> TaskId {
        let id = self.submit(queue, payload).await;
        let task = self
            .transport
            .claim(queue, "host:1:1/w0", Duration::from_secs(60))
            .await
            .expect("claim")
            .expect("a task");
        assert_eq!(task.id, id, "the task just submitted is claimed");
        let lease = Lease {
            id: task.id,
            token: task.lease_token,
        };
        let failed = self
            .transport
            .fail(&lease, &Failure::crash(reason), None)
            .await
            .expect("fail");
        assert!(failed);
        id
    }
}
