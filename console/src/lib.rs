//! The operator console of rex (`rex asynctask-dashboard`): server-rendered HTML pages, the
//! JSON API they use, and `/metrics` (OpenMetrics text), over any [`Transport`].
//!
//! # What lives where
//!
//! * this file — [`Config`], [`ConsoleError`], [`Console`] (the router with its per-process
//!   CSRF token) and [`serve`] (bind, announce, serve until a signal).
//! * `server.rs` — the router and the security layer: the access token (bearer header or
//!   cookie), CSRF checks on every POST, `--read-only`, security headers, the static assets.
//! * `snapshot.rs` — the queue statistics, shared between requests while they are costly
//!   to count (stale-while-revalidate), dropped by every action.
//! * `view.rs` — what pages and API share: the queue rows (configured ∪ `stats()`), filters
//!   parsed from query strings, the task and master views, error mapping.
//! * `api.rs` — the JSON handlers under `/api/`.
//! * `events.rs` — `/api/events`: the transport's lifecycle events as Server-Sent Events.
//! * `pages.rs` — the HTML handlers (and the form posts of the pages' buttons).
//! * `history.rs` — throughput history: the transport's per-minute rows as a range of
//!   minutes (`/api/history`, the queue page's table) and the SVG chart the server draws.
//! * `schedules.rs` — the project's schedules: last and next fire, pause flags, run now.
//! * `metrics.rs` — `/metrics`, built with `prometheus-client` on every scrape.
//! * `templates/*.html` — minijinja templates, auto-escaped, compiled in (`include_str!`).
//! * `assets/` — `console.js` (live overview, select-all) and `console.css`, compiled in.

mod api;
mod events;
mod history;
mod metrics;
mod pages;
mod schedules;
mod server;
mod snapshot;
mod view;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rex_transport::Transport;

/// The address the console binds by default: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8600";

/// The environment variable that may hold the access token.
pub const TOKEN_ENV: &str = "REX_DASHBOARD_TOKEN";

/// The name of the cookie that carries the access token after a `?token=` page load.
pub const TOKEN_COOKIE: &str = "rex_console_token";

/// What the console serves, and how.
#[derive(Clone)]
pub struct Config {
    pub transport: Arc<dyn Transport>,
    /// The configured queues (`asynctask_workers` keys): shown even without tasks.
    pub queues: Vec<String>,
    /// No actions: no buttons or forms in the pages, 403 on every action endpoint.
    pub read_only: bool,
    /// Required on every request when set (bearer header, cookie, or `?token=`).
    pub token: Option<String>,
    pub bind: SocketAddr,
    /// The project's name, shown in the pages' titles.
    pub project: String,
    /// The project's schedules (`asynctask_scheduled_workers`).
    pub schedules: Vec<Schedule>,
}

/// The next fire of a schedule after a time (`None`: it fires no more).
pub type NextFire = Arc<dyn Fn(SystemTime) -> Option<SystemTime> + Send + Sync>;

/// One schedule, as the console shows and runs it.
#[derive(Clone)]
pub struct Schedule {
    /// Its stable id: what its fires' keys and its pause flag are named by.
    pub id: String,
    /// What it runs: a worker, or a `rex` command.
    pub name: String,
    /// The queue its fires go to.
    pub queue: String,
    /// The rule as written (cron fields, time zone, dates).
    pub rule: String,
    /// The payload of each fire.
    pub payload: rex_transport::Payload,
    pub next_fire: NextFire,
}

/// Why the console could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "binding {0}, which is not a loopback address, needs an access token (--token or {TOKEN_ENV})"
    )]
    TokenRequired(SocketAddr),
    #[error("the access token must not be empty")]
    EmptyToken,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read random bytes for the CSRF token: {0}")]
    Random(std::io::Error),
    #[error("the console's server failed: {0}")]
    Serve(std::io::Error),
}

/// Refuse a configuration that would expose the console without a token.
pub fn check(config: &Config) -> Result<(), ConsoleError> {
    match &config.token {
        Some(token) if token.is_empty() => Err(ConsoleError::EmptyToken),
        None if !config.bind.ip().is_loopback() => Err(ConsoleError::TokenRequired(config.bind)),
        _ => Ok(()),
    }
}

/// The console's router and its per-process CSRF token.
pub struct Console {
    router: axum::Router,
    csrf: String,
}

impl Console {
    /// A console with a fresh random CSRF token.
    pub fn new(config: Config) -> Result<Console, ConsoleError> {
        check(&config)?;
        let csrf = random_token().map_err(ConsoleError::Random)?;
        Ok(Console::with_csrf(config, csrf))
    }

    /// A console with the given CSRF token (tests).
    pub fn with_csrf(config: Config, csrf: String) -> Console {
        Console {
            router: server::router(config, csrf.clone()),
            csrf,
        }
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }
}

/// 32 random bytes from the kernel, hex-encoded.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Bind `config.bind`, print `Console listening on http://ADDR/` (the real port), and serve
/// until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let addr = config.bind;
    let console = Console::new(config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Console listening on http://{bound}/");
    let _ = out.flush();
    drop(out);
    // Requests in flight get a moment to finish; an event stream (`/api/events`) never
    // would, so the server stops without it after that moment.
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, console.router()).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping.send(());
    });
    tokio::select! {
        served = std::future::IntoFuture::into_future(server) => served.map_err(ConsoleError::Serve),
        () = async {
            if stopped.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => Ok(()),
    }
}

/// How long requests in flight may take once the console is told to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
