//! The router and the security layer every request goes through:
//!
//! 1. security headers on every response (CSP `default-src 'self'`, `nosniff`, `DENY`);
//! 2. the access token, when one is set, compared in constant time: an
//!    `Authorization: Bearer TOKEN` header, or the `rex_console_token` cookie, which a page
//!    load with `?token=TOKEN` sets (HttpOnly, SameSite=Strict) before redirecting to the same
//!    URL without the token;
//! 3. every POST: 403 with `--read-only`, else 403 unless it carries the CSRF token, in an
//!    `X-CSRF-Token` header (API) or a `csrf` form field (the pages' forms).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use subtle::ConstantTimeEq;

use crate::snapshot::Snapshot;
use crate::{Config, TOKEN_COOKIE, api, metrics, pages};

/// The most a form post may carry (the failed page posts up to a page of ids).
const MAX_FORM: usize = 256 * 1024;

pub struct Shared {
    pub config: Config,
    pub csrf: String,
    pub templates: Environment<'static>,
    pub snapshot: Arc<Snapshot>,
    /// Throughput history reads, kept a few seconds.
    pub history: crate::history::Kept,
    /// Event streams open now (each holds a subscription: on PostgreSQL, a connection).
    pub streams: std::sync::atomic::AtomicUsize,
}

pub type AppState = Arc<Shared>;

pub fn router(config: Config, csrf: String) -> Router {
    let state = Arc::new(Shared {
        config,
        csrf,
        templates: pages::templates(),
        snapshot: Arc::default(),
        history: Default::default(),
        streams: Default::default(),
    });
    let api = Router::new()
        .route("/queues", get(api::queues))
        .route("/queues/{queue}/tasks", get(api::queue_tasks))
        .route("/queues/{queue}/pause", post(api::pause))
        .route("/queues/{queue}/resume", post(api::resume))
        .route("/tasks/{id}", get(api::task))
        .route("/tasks/{id}/retry", post(api::retry_task))
        .route("/tasks/{id}/purge", post(api::purge_task))
        .route("/tasks/{id}/cancel", post(api::cancel_task))
        .route("/failed", get(api::failed))
        .route("/failed/count", get(api::failed_count))
        .route("/failed/retry", post(api::retry_failed))
        .route("/failed/purge", post(api::purge_failed))
        .route("/masters", get(api::masters))
        .route("/history", get(api::history))
        .route("/events", get(crate::events::events))
        .route("/schedules", get(api::schedules))
        .route("/schedules/{id}/run", post(api::run_schedule))
        .route("/schedules/{id}/pause", post(api::pause_schedule))
        .route("/schedules/{id}/resume", post(api::resume_schedule))
        .fallback(api::not_found);
    Router::new()
        .route("/", get(pages::overview))
        .route("/queues/{queue}", get(pages::queue))
        .route("/queues/{queue}/pause", post(pages::pause))
        .route("/queues/{queue}/resume", post(pages::resume))
        .route("/tasks/{id}", get(pages::task))
        .route("/tasks/{id}/retry", post(pages::retry_task))
        .route("/tasks/{id}/purge", post(pages::purge_task))
        .route("/tasks/{id}/cancel", post(pages::cancel_task))
        .route("/failed", get(pages::failed))
        .route("/failed/action", post(pages::failed_action))
        .route("/workers", get(pages::workers))
        .route("/charts/throughput.svg", get(pages::throughput_chart))
        .route("/schedules", get(pages::schedules))
        .route("/schedules/{id}/run", post(pages::run_schedule))
        .route("/schedules/{id}/pause", post(pages::pause_schedule))
        .route("/schedules/{id}/resume", post(pages::resume_schedule))
        .route("/metrics", get(metrics::metrics))
        .route("/assets/console.js", get(script))
        .route("/assets/console.css", get(style))
        .nest("/api", api)
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/console.js"),
    )
}

async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/console.css"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Constant-time comparison (the length is not secret).
pub fn same(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn is_api(request: &Request) -> bool {
    request.uri().path().starts_with("/api/")
}

/// A refusal in the form the caller reads: JSON under `/api/`, text elsewhere.
fn refuse(api: bool, status: StatusCode, message: &str) -> Response {
    if api {
        crate::view::ApiError::new(status, message).into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message.to_string(),
        )
            .into_response()
    }
}

async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = check(&state, request, next).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn check(state: &Shared, request: Request, next: Next) -> Response {
    let api = is_api(&request);
    if let Some(token) = &state.config.token {
        match authenticate(&request, token) {
            Auth::Ok => {}
            Auth::FromQuery => return set_cookie_and_redirect(&request, token),
            Auth::Refused => {
                let mut response = refuse(
                    api,
                    StatusCode::UNAUTHORIZED,
                    "an access token is required: Authorization: Bearer TOKEN, or open the console with ?token=TOKEN",
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    if state.config.read_only {
        return refuse(api, StatusCode::FORBIDDEN, "the console is read-only");
    }
    match csrf_checked(request, &state.csrf).await {
        Ok(request) => {
            let response = next.run(request).await;
            // Whatever the action changed, the next page shows it.
            state.snapshot.invalidate();
            response
        }
        Err(message) => refuse(api, StatusCode::FORBIDDEN, message),
    }
}

enum Auth {
    Ok,
    FromQuery,
    Refused,
}

fn authenticate(request: &Request, token: &str) -> Auth {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|given| same(given.trim(), token)) {
        return Auth::Ok;
    }
    if cookie(headers, TOKEN_COOKIE).is_some_and(|given| same(given, token)) {
        return Auth::Ok;
    }
    let query = request.uri().query().unwrap_or("");
    let from_query = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .any(|given| same(&decode(given), token));
    if from_query && request.method() == Method::GET {
        Auth::FromQuery
    } else {
        Auth::Refused
    }
}

/// One cookie's value.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Percent-decoding of one query value (`+` is a space).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token was right: remember it in a cookie and drop it from the address bar.
fn set_cookie_and_redirect(request: &Request, token: &str) -> Response {
    let rest: Vec<&str> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("token="))
        .collect();
    let mut location = request.uri().path().to_string();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&rest.join("&"));
    }
    let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// The request, if it carries the CSRF token (a form post's body is read and put back).
async fn csrf_checked(request: Request, csrf: &str) -> Result<Request, &'static str> {
    if let Some(given) = request.headers().get("x-csrf-token") {
        return match given.to_str() {
            Ok(given) if same(given, csrf) => Ok(request),
            _ => Err("wrong CSRF token"),
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err("missing CSRF token (X-CSRF-Token header)");
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| "form too large")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "form is not UTF-8")?;
    let ok = text
        .split('&')
        .filter_map(|pair| pair.strip_prefix("csrf="))
        .any(|given| same(&decode(given), csrf));
    if !ok {
        return Err("missing or wrong CSRF token");
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_comparison() {
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
        assert_eq!(decode("%zz"), "%zz");
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
    }
}
