//! The pages and the JSON API against a memory transport.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use rex_transport::memory::MemoryTransport;
use serde_json::json;
use support::{CSRF, Harness};
use tower::ServiceExt;

#[tokio::test]
async fn overview_and_api_count_submits_and_show_configured_queues() {
    let h = Harness::new();
    for n in 0..3 {
        h.submit("emails", json!({ "n": n })).await;
    }
    h.submit("reports", json!({})).await;
    let api = h.get("/api/queues").await;
    assert_eq!(api.status, 200, "{}", api.body);
    let data = api.json();
    let queues = data["queues"].as_array().expect("queues");
    let names: Vec<&str> = queues.iter().filter_map(|q| q["queue"].as_str()).collect();
    assert_eq!(
        names,
        ["emails", "idle", "reports"],
        "configured ∪ stats, sorted"
    );
    assert_eq!(queues[0]["ready"], 3);
    assert_eq!(queues[0]["configured"], true);
    assert_eq!(queues[1]["ready"], 0, "a configured queue without tasks");
    assert_eq!(queues[2]["configured"], false);
    assert_eq!(data["transport"], "memory:");

    let page = h.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#"<a href="/queues/idle">idle</a>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-live="/api/queues""#));
    assert!(
        page.body
            .contains(r#"<script src="/assets/console.js" defer></script>"#)
    );
    assert!(!page.body.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn pause_and_resume_through_the_api() {
    let h = Harness::new();
    h.submit("emails", json!({})).await;
    let paused = h.post_json("/api/queues/emails/pause", "").await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.json()["changed"], true);
    assert_eq!(h.transport.paused().await.expect("paused"), ["emails"]);
    let rows = h.get("/api/queues").await.json();
    assert_eq!(rows["queues"][0]["paused"], true);
    let page = h.get("/queues/emails").await;
    assert!(page.body.contains("Resume"), "{}", page.body);
    let resumed = h.post_json("/api/queues/emails/resume", "").await;
    assert_eq!(resumed.json()["paused"], false);
    assert!(h.transport.paused().await.expect("paused").is_empty());
    let bad = h.post_json("/api/queues/Bad__Name/pause", "").await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].is_string());
}

#[tokio::test]
async fn the_form_buttons_pause_and_resume() {
    let h = Harness::new();
    let reply = h
        .post_form("/queues/idle/pause", &format!("csrf={CSRF}"))
        .await;
    assert_eq!(reply.status, 303);
    assert_eq!(h.transport.paused().await.expect("paused"), ["idle"]);
}

#[tokio::test]
async fn the_task_page_shows_the_history_and_escapes_the_payload() {
    let h = Harness::new();
    let id = h
        .failed(
            "emails",
            json!({ "x": "<script>alert(1)</script>" }),
            "killed by SIGKILL",
        )
        .await;
    let page = h.get(&format!("/tasks/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(
        page.body
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("killed by SIGKILL"));
    assert!(page.body.contains("crash"), "the outcome");
    assert!(page.body.contains("host:1:1"), "the owner of the attempt");
    assert!(
        page.body
            .contains(&format!(r#"action="/tasks/{id}/retry""#))
    );

    let api = h.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(api.json()["payload"]["x"], "<script>alert(1)</script>");
    assert_eq!(h.get("/tasks/999999").await.status, 404);
    assert_eq!(h.get("/api/tasks/999999").await.status, 404);
    assert_eq!(h.get("/api/tasks/nope").await.status, 400);
    assert_eq!(h.get("/no/such/page").await.status, 404);
}

#[tokio::test]
async fn queue_listing_paginates_by_id_and_searches() {
    let h = Harness::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            h.submit("emails", json!({ "n": n, "tag": format!("t{n}") }))
                .await,
        );
    }
    let first = h.get("/api/queues/emails/tasks?state=ready&limit=2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    assert_eq!(first["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["next_after"], ids[1]);
    let second = h
        .get(&format!(
            "/api/queues/emails/tasks?state=ready&limit=2&after={}",
            ids[1]
        ))
        .await
        .json();
    assert_eq!(second["tasks"][0]["id"], ids[2]);
    let found = h.get("/api/queues/emails/tasks?text=t3").await.json();
    assert_eq!(found["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["tasks"][0]["id"], ids[3]);
    assert_eq!(
        h.get("/api/queues/emails/tasks?state=bogus").await.status,
        400
    );
    assert_eq!(h.get("/api/queues/emails/tasks?limit=0").await.status, 400);

    let page = h.get("/queues/emails?state=ready&limit=2").await;
    assert!(
        page.body.contains(&format!("after={}", ids[1])),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn failed_filters_and_bulk_actions_touch_only_the_filtered_tasks() {
    let h = Harness::new();
    let a = h.failed("emails", json!({ "to": "a" }), "smtp down").await;
    let b = h
        .failed("emails", json!({ "to": "b" }), "bad address")
        .await;
    let c = h.failed("reports", json!({ "to": "c" }), "smtp down").await;

    let count = h.get("/api/failed/count?text=smtp").await.json();
    assert_eq!(count["count"], 2);
    let listed = h.get("/api/failed?queue=emails&text=smtp").await.json();
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["tasks"][0]["id"], a);

    // The page's "retry all matching": a confirmation with the count first, then the action.
    let form = format!("csrf={CSRF}&scope=filter&action=retry&queue=&text=smtp&since=&until=");
    let confirm = h.post_form("/failed/action", &form).await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("Retry 2 failed tasks?"),
        "{}",
        confirm.body
    );
    assert_eq!(
        h.transport
            .count(&rex_transport::TaskFilter::failed(None))
            .await
            .ok(),
        Some(3),
        "nothing yet"
    );
    let done = h
        .post_form("/failed/action", &format!("{form}&confirmed=2"))
        .await;
    assert!(
        done.body.contains("Retried 2 failed tasks"),
        "{}",
        done.body
    );
    let left = h.get("/api/failed").await.json();
    assert_eq!(left["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(left["tasks"][0]["id"], b);

    // API purge by filter: only the reports queue (nothing failed there any more).
    let purged = h
        .post_json("/api/failed/purge", r#"{"filter": {"queue": "reports"}}"#)
        .await;
    assert_eq!(purged.json()["purged"], 0, "{}", purged.body);
    let purged = h
        .post_json("/api/failed/purge", &format!(r#"{{"ids": [{b}, {c}]}}"#))
        .await;
    assert_eq!(
        purged.json()["purged"],
        1,
        "c is pending again, only b is purged"
    );
    assert_eq!(h.transport.task(b).await.ok().flatten(), None);
    assert!(h.transport.task(c).await.ok().flatten().is_some());
    let bad = h
        .post_json("/api/failed/retry", r#"{"ids": [1], "filter": {}}"#)
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn selected_failed_tasks_are_retried_after_confirmation() {
    let h = Harness::new();
    let a = h.failed("emails", json!({}), "x").await;
    let b = h.failed("emails", json!({}), "x").await;
    let form =
        format!("csrf={CSRF}&scope=selected&action=purge&queue=&text=&since=&until=&ids={a}");
    let confirm = h.post_form("/failed/action", &form).await;
    assert!(
        confirm.body.contains("Purge 1 failed task?"),
        "{}",
        confirm.body
    );
    let done = h
        .post_form("/failed/action", &format!("{form}&confirmed=1"))
        .await;
    assert!(done.body.contains("Purged 1 failed task."), "{}", done.body);
    assert_eq!(h.transport.task(a).await.ok().flatten(), None);
    assert!(h.transport.task(b).await.ok().flatten().is_some());
    let page = h.get("/failed").await;
    assert!(
        page.body.contains(&format!(r#"name="ids" value="{b}""#)),
        "{}",
        page.body
    );
    assert!(page.body.contains("1 failed task match"), "{}", page.body);
}

#[tokio::test]
async fn the_workers_page_lists_masters_and_children() {
    use std::time::{Duration, SystemTime};
    let h = Harness::new();
    let now = SystemTime::now();
    let record = rex_transport::MasterRecord {
        id: "box:42:1".into(),
        host: "box".into(),
        pid: 42,
        version: "0.1.0".into(),
        started_at: now - Duration::from_secs(120),
        beat_at: now,
        expires_at: now + Duration::from_secs(60),
        scheduler: true,
        children: vec![rex_transport::ChildRecord {
            queue: "emails".into(),
            slot: 0,
            pid: Some(4242),
            task: Some(7),
            task_since: Some(now),
            processed: 10,
            restarts: 2,
            rss_bytes: Some(8 * 1024 * 1024),
        }],
        totals: Vec::new(),
    };
    h.transport.beat(&record).await.expect("beat");
    let page = h.get("/workers").await;
    assert_eq!(page.status, 200);
    for text in [
        "box",
        "4242",
        "8.0 MiB",
        "scheduler",
        r#"href="/tasks/7""#,
        "2m 0s",
    ] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }
    let api = h.get("/api/masters").await.json();
    assert_eq!(api["masters"][0]["children"][0]["restarts"], 2);
}

#[tokio::test]
async fn the_schedules_page_runs_a_schedule_once_per_click_and_pauses_it() {
    let h = Harness::new();
    let page = h.get("/schedules").await;
    assert_eq!(page.status, 200);
    for text in [
        support::SCHEDULE,
        "report_worker",
        "Run now",
        "Pause",
        "active",
    ] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }
    let nonce = page
        .body
        .split(r#"name="nonce" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's nonce")
        .to_string();
    let run = format!("/schedules/{}/run", support::SCHEDULE);
    let form = format!("csrf={}&nonce={nonce}", support::CSRF);
    let first = h.post_form(&run, &form).await;
    assert_eq!(first.status, 303);
    let again = h.post_form(&run, &form).await;
    let location = |reply: &support::Reply| {
        reply.headers[axum::http::header::LOCATION]
            .to_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        location(&again).ends_with("task=again"),
        "{}",
        location(&again)
    );
    let counts = h.transport.counts("reports").await.expect("counts");
    assert_eq!(counts.ready, 1, "one task for the click sent twice");
    let shown = h.get(&location(&first)).await;
    assert!(shown.body.contains("enqueued task"), "{}", shown.body);

    let paused = h
        .post_form(
            &format!("/schedules/{}/pause", support::SCHEDULE),
            &format!("csrf={}", support::CSRF),
        )
        .await;
    assert_eq!(paused.status, 303);
    let page = h.get("/schedules").await;
    assert!(
        page.body.contains("Resume") && page.body.contains("paused"),
        "{}",
        page.body
    );
    let unknown = h.post_json("/api/schedules/nosuch/run", "").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let malformed = h.post_json("/api/schedules/no%20such/pause", "").await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
}

#[tokio::test]
async fn pending_and_running_tasks_are_cancelled_from_their_page_and_the_api() {
    let h = Harness::new();
    let pending = h.submit("emails", serde_json::json!({"n": 1})).await;
    let page = h.get(&format!("/tasks/{pending}")).await;
    assert!(page.body.contains(">Cancel</button>"), "{}", page.body);
    let form = format!("csrf={CSRF}");
    let cancelled = h
        .post_form(&format!("/tasks/{pending}/cancel"), &form)
        .await;
    assert_eq!(cancelled.status, 303);
    let page = h.get(&format!("/tasks/{pending}")).await;
    assert!(
        page.body.contains("cancelled by an operator"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(">Cancel</button>"),
        "a failed task cannot be cancelled"
    );
    let again = h
        .post_json(&format!("/api/tasks/{pending}/cancel"), "")
        .await;
    assert_eq!(again.status, 409, "{}", again.body);

    h.submit("emails", serde_json::json!({"n": 2})).await;
    let running = h
        .transport
        .claim("emails", "box:1:1:1", std::time::Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("a task");
    let asked = h
        .post_json(&format!("/api/tasks/{}/cancel", running.id), "")
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(asked.json()["outcome"], "requested", "{}", asked.body);
    let requests = h.transport.cancel_requests().await.expect("requests");
    assert_eq!(requests, [(running.id, running.attempt)]);
    let none = h.post_json("/api/tasks/99999/cancel", "").await;
    assert_eq!(none.status, 404, "{}", none.body);
}

#[tokio::test]
async fn the_event_stream_carries_the_lifecycle_events_of_its_queue() {
    use futures_util::StreamExt;
    let transport = rex_transport::events::tap(Arc::new(MemoryTransport::new()));
    let h = Harness::over(transport, |_| {});
    assert_eq!(
        h.get("/api/events?queue=BAD").await.status,
        StatusCode::BAD_REQUEST
    );
    let response = h
        .console
        .router()
        .oneshot(
            Request::get("/api/events?queue=emails")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("the router answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    // Subscribed once the response is there: what happens next is in the stream.
    h.submit("idle", json!({})).await;
    let id = h.submit("emails", json!({"to": "<b>"})).await;
    let mut body = response.into_body().into_data_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
        .await
        .expect("an event (a guard, not a wait)")
        .expect("the stream stays open")
        .expect("a chunk");
    let text = String::from_utf8(chunk.to_vec()).expect("UTF-8");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    assert!(text.starts_with("event: submitted\n"), "{text}");
    let event: serde_json::Value = serde_json::from_str(data).expect("JSON");
    assert_eq!(
        event["queue"], "emails",
        "the idle queue's event is filtered out"
    );
    assert_eq!(event["task"], id);
}
