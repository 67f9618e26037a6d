//! Cancelling a running task. An operator's cancel (`asynctask-cancel`, the console) leaves a
//! request naming the task and its attempt in the transport
//! ([`request_cancel`](rex_transport::Transport::request_cancel)); at every beat, while any
//! child runs a task, the master reads the requests on the ledger's thread and, from the
//! previous read, kills the group of each child whose running attempt was cancelled (as a
//! timeout kill does). Its death is then settled as *cancelled*: the attempt recorded as
//! such, the task kept as failed (no retry, no crash counted), the child relaunched.
//!
//! So a cancel takes effect within two beats (about 4 s). A request names an attempt: one
//! that ended meanwhile is not touched, and a retry (whose attempts count from 1 again) drops
//! the requests of the retried task in the transport; the master acts only on a read issued
//! after the attempt started, so an older read cannot stop a retried attempt either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rex_transport::{Transport, TransportError};
use tokio::task::JoinHandle;

use super::Supervisor;
use super::death::DeathCause;
use super::ledger::Ledger;
use super::slots::State;
use crate::logging::Logger;

/// When a read of the requests was issued, and what it found: (task, attempt).
type Read = (Instant, Vec<(i64, u32)>);

#[derive(Default)]
pub(super) struct Cancels {
    /// The requests as last read, and when that read was issued.
    seen: Arc<Mutex<Option<Read>>>,
    /// Set while a read runs.
    reading: Arc<AtomicBool>,
    /// Set once the transport said it cannot cancel.
    unsupported: Arc<AtomicBool>,
}

impl Cancels {
    /// Read the requests again on the ledger's thread (unless a read still runs); the job.
    fn refresh(&self, ledger: &Ledger, transport: &Arc<dyn Transport>) -> Option<JoinHandle<()>> {
        if self.unsupported.load(Ordering::Relaxed) || self.reading.swap(true, Ordering::AcqRel) {
            return None;
        }
        let (seen, reading) = (Arc::clone(&self.seen), Arc::clone(&self.reading));
        let unsupported = Arc::clone(&self.unsupported);
        let transport = Arc::clone(transport);
        let log = Logger::new(super::MASTER);
        let issued = Instant::now();
        Some(ledger.spawn(async move {
            match transport.cancel_requests().await {
                Ok(requests) => {
                    *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some((issued, requests))
                }
                Err(TransportError::Unsupported(why)) => {
                    unsupported.store(true, Ordering::Relaxed);
                    log.debug(format_args!("Not watching for cancelled tasks: {why}"));
                }
                // An outage is reported by the operations that need the server.
                Err(e) => log.debug(format_args!("Cannot read the cancelled tasks: {e}")),
            }
            reading.store(false, Ordering::Release);
        }))
    }

    /// Whether attempt `attempt` of `task`, started at `started`, was cancelled: by a read
    /// issued after it started. (An older read may predate a retry, which starts the attempt
    /// count again and drops the requests of the retried task.)
    fn requested(&self, task: i64, attempt: u32, started: Instant) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(issued, requests)| {
                *issued > started && requests.contains(&(task, attempt))
            })
    }
}

impl Supervisor {
    /// At a beat: stop the children whose running attempt was cancelled (as last read), and
    /// read the requests again while any child runs a task (the read's job, which nothing
    /// waits for but tests).
    pub(super) fn act_on_cancels(&mut self) -> Option<JoinHandle<()>> {
        let mut busy = false;
        for slot in &mut self.slots {
            let State::Running(child) = &mut slot.state else {
                continue;
            };
            let Some(running) = child.current() else {
                continue;
            };
            busy = true;
            if child.kill_reason.is_none()
                && self
                    .cancels
                    .requested(running.task, running.attempt, running.started)
            {
                self.log.error(format_args!(
                    "Task {} on queue {} was cancelled by an operator; stopping its worker",
                    running.task, slot.config.queue
                ));
                child.kill_reason = Some((DeathCause::Cancelled, (running.task, running.token)));
                child.kill();
            }
        }
        if !busy {
            return None;
        }
        self.cancels.refresh(&self.ledger, &self.transport)
    }
}
