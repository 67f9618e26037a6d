//! `rex asynctask-dashboard`: the operator console of crate `rex-console`, served for the
//! project's transport until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::cli::Parsed;
use crate::error::{Error, Result};
use crate::project::{App, Requirement};
use crate::settings::Entry;

/// A schedule entry as the console needs it.
fn schedule(entry: &Entry) -> rex_console::Schedule {
    let cron = entry.schedule.clone();
    rex_console::Schedule {
        id: entry.id.clone(),
        name: entry.name().to_string(),
        queue: entry.queue(),
        rule: entry.description.to_string(),
        payload: entry.payload(),
        next_fire: Arc::new(move |after| {
            cron.next_after(DateTime::<Utc>::from(after))
                .map(SystemTime::from)
        }),
    }
}

pub fn task(parsed: &Parsed) -> Result<i32> {
    let bind_text = parsed
        .value("bind")
        .unwrap_or_else(|| rex_console::DEFAULT_BIND.to_string());
    let bind: SocketAddr = bind_text.parse().map_err(|_| {
        Error::with_body("Expected an address such as 127.0.0.1:8600", &bind_text)
            .context("While parsing option:", "--bind")
    })?;
    let token = parsed
        .value("token")
        .or_else(|| std::env::var(rex_console::TOKEN_ENV).ok())
        .filter(|t| !t.is_empty());
    let app = App::build(
        &parsed.project_args(),
        Requirement {
            package: "rex.asynctask",
            fallback: Some("rex.asynctask"),
        },
    )?;
    let transport = app.open_shared_transport()?;
    let project = app
        .args
        .project
        .clone()
        .or_else(|| app.requirements.first().cloned())
        .unwrap_or_else(|| "rex".into());
    let config = rex_console::Config {
        transport,
        queues: app
            .settings
            .queues()
            .iter()
            .map(|q| q.queue.clone())
            .collect(),
        read_only: parsed.flag("read-only"),
        token,
        bind,
        project,
        schedules: app.settings.schedules().iter().map(schedule).collect(),
    };
    // Refused before anything is bound or started.
    rex_console::check(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(rex_console::serve(config, rex_console::shutdown_signal()))?;
    Ok(0)
}
