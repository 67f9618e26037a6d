//! The security layer (token, CSRF, read-only, headers) and `/metrics`.

mod support;

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::json;
use support::{CSRF, Harness};

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let h = Harness::new();
    for uri in ["/", "/api/queues", "/assets/console.js", "/nope"] {
        let reply = h.get(uri).await;
        assert_eq!(
            reply.headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'"
        );
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "DENY");
    }
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused() {
    let h = Harness::new();
    let id = h.failed("emails", json!({}), "x").await;
    let no_header = h
        .send(
            Request::post("/api/queues/emails/pause")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(no_header.status, 403);
    assert!(no_header.json()["error"].is_string());
    let wrong = h
        .send(
            Request::post(format!("/api/tasks/{id}/purge"))
                .header("x-csrf-token", "wrong")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(wrong.status, 403);
    let form = h
        .post_form(&format!("/tasks/{id}/purge"), "csrf=wrong")
        .await;
    assert_eq!(form.status, 403);
    let form = h.post_form(&format!("/tasks/{id}/purge"), "").await;
    assert_eq!(form.status, 403);
    assert!(
        h.transport.task(id).await.ok().flatten().is_some(),
        "nothing done"
    );
    assert!(h.transport.paused().await.expect("paused").is_empty());
    let ok = h
        .post_form(&format!("/tasks/{id}/purge"), &format!("csrf={CSRF}"))
        .await;
    assert_eq!(ok.status, 303);
    assert!(h.transport.task(id).await.ok().flatten().is_none());
}

#[tokio::test]
async fn read_only_refuses_every_action_and_shows_no_forms() {
    let h = Harness::with(|c| c.read_only = true);
    let id = h.failed("emails", json!({}), "x").await;
    for uri in [
        "/api/queues/emails/pause".to_string(),
        format!("/api/tasks/{id}/retry"),
        "/api/failed/purge".into(),
    ] {
        assert_eq!(
            h.post_json(&uri, r#"{"ids": []}"#).await.status,
            403,
            "{uri}"
        );
    }
    let form = h
        .post_form(
            "/failed/action",
            &format!("csrf={CSRF}&scope=filter&action=purge&confirmed=1"),
        )
        .await;
    assert_eq!(form.status, 403);
    assert!(h.transport.task(id).await.ok().flatten().is_some());
    for uri in [
        "/".to_string(),
        "/queues/emails".into(),
        format!("/tasks/{id}"),
        "/failed".into(),
    ] {
        let page = h.get(&uri).await;
        assert_eq!(page.status, 200, "{uri}");
        assert!(
            !page.body.contains("<form method=\"post\""),
            "{uri}: {}",
            page.body
        );
        assert!(!page.body.contains("name=\"csrf\""), "{uri}");
        assert!(
            !page.body.contains(">Pause<") && !page.body.contains("Retry"),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_token_is_required_and_checked() {
    let h = Harness::with(|c| c.token = Some("s3cret".into()));
    let none = h.get("/api/queues").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(h.get("/").await.status, 401);
    assert_eq!(h.get("/metrics").await.status, 401);
    let bearer = |token: &str| {
        Request::get("/api/queues")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(h.send(bearer("wrong")).await.status, 401);
    assert_eq!(h.send(bearer("s3cre")).await.status, 401);
    assert_eq!(h.send(bearer("s3cret")).await.status, 200);

    // ?token= sets the cookie and drops the token from the address.
    let first = h.get("/failed?token=s3cret&queue=emails").await;
    assert_eq!(first.status, 303);
    assert_eq!(first.headers[header::LOCATION], "/failed?queue=emails");
    let cookie = first.headers[header::SET_COOKIE].to_str().expect("ASCII");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert_eq!(h.get("/?token=wrong").await.status, 401);
    let with_cookie = h
        .send(
            Request::get("/")
                .header(header::COOKIE, "rex_console_token=s3cret")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(with_cookie.status, 200);
    // A POST with the token still needs the CSRF token.
    let post = h
        .send(
            Request::post("/api/queues/emails/pause")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(post.status, 403);
}

#[test]
fn a_public_bind_without_a_token_is_refused() {
    let transport = std::sync::Arc::new(rex_transport::memory::MemoryTransport::new());
    let mut config = support::config(transport);
    config.bind = "0.0.0.0:8600".parse().expect("address");
    let e = rex_console::check(&config).expect_err("refused");
    assert!(e.to_string().contains("needs an access token"), "{e}");
    config.token = Some("t".into());
    assert!(rex_console::check(&config).is_ok());
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let h = Harness::new();
    h.submit("emails", json!({})).await;
    h.submit("emails", json!({})).await;
    h.failed("reports", json!({}), "x").await;
    h.transport.set_paused("idle", true).await.expect("pause");
    let reply = h.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
    let lines = reply.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses");
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value("rex_tasks", &[("queue", "emails"), ("state", "ready")]),
        Some(2.0)
    );
    assert_eq!(
        value("rex_tasks", &[("queue", "reports"), ("state", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        value("rex_tasks", &[("queue", "idle"), ("state", "ready")]),
        Some(0.0)
    );
    assert_eq!(value("rex_queue_paused", &[("queue", "idle")]), Some(1.0));
    assert_eq!(value("rex_queue_paused", &[("queue", "emails")]), Some(0.0));
    assert!(
        value(
            "rex_queue_oldest_pending_age_seconds",
            &[("queue", "emails")]
        )
        .is_some()
    );
    assert!(reply.body.contains("# TYPE rex_tasks gauge"));
}
