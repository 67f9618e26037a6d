//! `rex asynctask-events`: follow the lifecycle events of tasks (submitted, started,
//! succeeded, failed, retried, crashed, cancelled, released) as they happen, one line each,
//! until interrupted. The events come from the transport's own publish/subscribe
//! (`rex_transport::events`); nothing polls the tasks.

use std::io::Write;

use rex_transport::{EventKind, TaskEvent, validate_queue_name};

use super::operator::app;
use super::show::rfc3339;
use crate::cli::Parsed;
use crate::error::{Error, Result};
use crate::runtime::current_thread;

pub fn events(parsed: &Parsed) -> Result<i32> {
    let queue = parsed.value("queue");
    if let Some(queue) = &queue {
        validate_queue_name(queue)?;
    }
    let json = parsed.flag("json");
    let app = app(parsed)?;
    let transport = app.open_shared_transport()?;
    let runtime = current_thread()?;
    runtime.block_on(async {
        let mut feed = transport.follow_events().await?;
        // On stderr, so that stdout holds events only. Processes that already run see this
        // follower within `FOLLOW_CHECK` (2 s); those started from now on, at once.
        eprintln!(
            "Following the events of {} (interrupt to stop)",
            transport.describe()
        );
        let mut out = std::io::stdout().lock();
        // Listening from here on: a signal that arrives while a batch is printed still counts.
        let stop = rex_console::shutdown_signal();
        tokio::pin!(stop);
        loop {
            let batch = tokio::select! {
                batch = feed.recv() => batch,
                () = &mut stop => return Ok(0),
            };
            let batch = match batch {
                Some(Ok(batch)) => batch,
                Some(Err(e)) => {
                    return Err(Error::from(e)
                        .context("While following the events of", transport.describe()));
                }
                None => return Err(Error::new("The event feed ended")),
            };
            for event in batch {
                if queue.as_ref().is_some_and(|q| *q != event.queue) {
                    continue;
                }
                let line = if json {
                    serde_json::to_string(&event).unwrap_or_default()
                } else {
                    line(&event)
                };
                // The reader went away (`| head`): a normal end.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(0);
                }
            }
        }
    })
}

/// `2026-12-03T10:00:00.000Z retried   emails task 42 attempt 1: Oops! (again at ...)`.
fn line(event: &TaskEvent) -> String {
    let mut line = format!(
        "{} {:<9} {}",
        rfc3339(rex_transport::task::from_epoch_ms(event.at)),
        event.event.as_str(),
        event.queue
    );
    match (event.task, event.parent) {
        (Some(id), _) => line.push_str(&format!(" task {id}")),
        (None, Some(parent)) => line.push_str(&format!(" follow-up of task {parent}")),
        (None, None) => {}
    }
    if let Some(attempt) = event.attempt {
        line.push_str(&format!(" attempt {attempt}"));
    }
    if event.event == EventKind::Started
        && let Some(owner) = &event.owner
    {
        line.push_str(&format!(" by {owner}"));
    }
    if let Some(reason) = &event.reason {
        // One event, one line, whatever the error said.
        let reason = reason.replace(['\n', '\r'], " ");
        line.push_str(&format!(": {reason}"));
    }
    if let Some(at) = event.retry_at {
        line.push_str(&format!(
            " (again at {})",
            rfc3339(rex_transport::task::from_epoch_ms(at))
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_event_is_one_readable_line() {
        let mut retried = TaskEvent::new(EventKind::Retried, "emails", Some(42), 0);
        retried.attempt = Some(1);
        retried.reason = Some("Oops!\nline two".into());
        retried.retry_at = Some(60_000);
        assert_eq!(
            line(&retried),
            "1970-01-01T00:00:00.000Z retried   emails task 42 attempt 1: Oops! line two (again at 1970-01-01T00:01:00.000Z)"
        );
        let mut follow_up = TaskEvent::new(EventKind::Submitted, "emails", None, 0);
        follow_up.parent = Some(7);
        assert_eq!(
            line(&follow_up),
            "1970-01-01T00:00:00.000Z submitted emails follow-up of task 7"
        );
        let mut started = TaskEvent::new(EventKind::Started, "emails", Some(8), 0);
        started.attempt = Some(2);
        started.owner = Some("web1:42:9:0".into());
        assert_eq!(
            line(&started),
            "1970-01-01T00:00:00.000Z started   emails task 8 attempt 2 by web1:42:9:0"
        );
    }
}
