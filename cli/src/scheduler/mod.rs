//! The `--scheduler` producer of `asynctask_scheduled_workers` (the setting's entries are
//! validated and typed in `crate::settings::schedules`).
//!
//! * [`Scheduler`] runs in a `--scheduler` master: it sleeps until the next fire and submits
//!   the entry's payload under the idempotency key `schedule:<id>:<fire time>`, so any number
//!   of schedulers on one transport enqueue each fire exactly once. Every master (scheduler
//!   or not) runs the consumers of the scheduled queues. The fires of a schedule paused in
//!   the transport (from the console) are skipped, each checked when it is due.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::logging::Logger;
use crate::settings::{Entry, Misfire, Overlap};
use rex_transport::{SubmitOptions, Transport, schedule_key};

/// The `--scheduler` producer.
pub struct Scheduler {
    entries: Vec<Entry>,
    transport: Arc<dyn Transport>,
    log: Logger,
}

/// Wall-clock jumps are noticed within this long.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long the key of a fire is kept (the latest of each schedule is kept for good): far
/// longer than any scheduler could lag behind another, so no fire is ever enqueued twice.
const KEY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often old keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Scheduler {
    pub fn new(entries: Vec<Entry>, transport: Arc<dyn Transport>, log: Logger) -> Scheduler {
        Scheduler {
            entries,
            transport,
            log,
        }
    }

    /// Log the schedules, run missed fires (`misfire: run_once`), then fire forever.
    pub async fn run(self) {
        for entry in &self.entries {
            self.log.info(format_args!(
                "Scheduling \"{}\" for {}",
                entry.name(),
                entry.description
            ));
        }
        let now = Utc::now();
        for entry in &self.entries {
            if entry.misfire == Misfire::RunOnce {
                self.run_missed(entry, now).await;
            }
        }
        let mut pruned_at: Option<std::time::Instant> = None;
        let mut next: Vec<Option<DateTime<Utc>>> = self
            .entries
            .iter()
            .map(|e| e.schedule.next_after(now))
            .collect();
        loop {
            if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(std::time::Instant::now());
                self.prune_keys().await;
            }
            let Some((i, at)) = next
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (i, t)))
                .min_by_key(|(_, t)| *t)
            else {
                self.log.info(format_args!(
                    "No schedule has a future fire time; the scheduler is idle"
                ));
                std::future::pending::<()>().await;
                return;
            };
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            if wait > MAX_SLEEP {
                tokio::time::sleep(MAX_SLEEP).await;
                continue;
            }
            tokio::time::sleep(wait).await;
            self.fire(&self.entries[i], at).await;
            next[i] = self.entries[i].schedule.next_after(at);
        }
    }

    /// Forget the keys of fires older than [`KEY_RETENTION`] so they do not pile up forever.
    async fn prune_keys(&self) {
        let before = std::time::SystemTime::now() - KEY_RETENTION;
        match self.transport.prune_schedule_keys(before).await {
            Ok(0) => {}
            Ok(n) => self
                .log
                .debug(format_args!("Pruned {n} schedule keys older than 7 days")),
            Err(e) => self
                .log
                .warn(format_args!("Cannot prune old schedule keys: {e}")),
        }
    }

    /// After downtime: if fires were missed since the last recorded one, run the latest once.
    async fn run_missed(&self, entry: &Entry, now: DateTime<Utc>) {
        let last = match self.transport.last_fire(&entry.id).await {
            Ok(Some(last)) => DateTime::<Utc>::from(last),
            Ok(None) => return, // never fired: nothing was missed
            Err(e) => {
                self.log.warn(format_args!(
                    "Cannot read the last fire of \"{}\": {e}",
                    entry.name()
                ));
                return;
            }
        };
        let mut missed = None;
        let mut t = last;
        for _ in 0..1_000_000 {
            match entry.schedule.next_after(t) {
                Some(n) if n <= now => {
                    missed = Some(n);
                    t = n;
                }
                _ => break,
            }
        }
        if let Some(at) = missed {
            self.log.info(format_args!(
                "Running \"{}\" once for the fires missed since {}",
                entry.name(),
                last.to_rfc3339()
            ));
            self.fire(entry, at).await;
        }
    }

    async fn fire(&self, entry: &Entry, at: DateTime<Utc>) {
        let queue = entry.queue();
        // Paused from the console: this fire is skipped (a transport that cannot pause
        // schedules, or cannot be asked now, fires as usual; the submit reports an outage).
        if let Ok(true) = self.transport.schedule_paused(&entry.id).await {
            self.log.info(format_args!(
                "Skipping scheduled execution of {}: schedule \"{}\" is paused",
                entry.consumer(),
                entry.name()
            ));
            return;
        }
        if entry.overlap == Overlap::SkipIfRunning {
            match self.transport.counts(&queue).await {
                Ok(c) if c.ready + c.delayed + c.running > 0 => {
                    self.log.info(format_args!("Skipping scheduled execution of {}: the previous one is still queued or running", entry.consumer()));
                    return;
                }
                _ => {}
            }
        }
        let opts = SubmitOptions {
            run_at: None,
            idempotency_key: Some(schedule_key(&entry.id, at.into())),
        };
        let mut delay = Duration::from_millis(200);
        for _ in 0..6 {
            match self.transport.submit(&queue, entry.payload(), &opts).await {
                Ok(Some(_)) => {
                    self.log.debug(format_args!(
                        "Triggering scheduled execution of {}",
                        entry.consumer()
                    ));
                    return;
                }
                Ok(None) => {
                    self.log.debug(format_args!(
                        "Scheduled execution of {} at {} was already enqueued by another scheduler",
                        entry.consumer(),
                        at.to_rfc3339()
                    ));
                    return;
                }
                Err(e) if e.is_retryable() => {
                    self.log.warn(format_args!(
                        "Cannot enqueue the scheduled execution of {} ({e}); retrying",
                        entry.consumer()
                    ));
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    self.log.error(format_args!(
                        "Cannot enqueue the scheduled execution of {}: {e}",
                        entry.consumer()
                    ));
                    break;
                }
            }
        }
        self.log.error(format_args!(
            "Gave up enqueueing the execution of \"{}\" due at {}",
            entry.name(),
            at.to_rfc3339()
        ));
    }
}
