//! Pausing a queue (`rex asynctask-pause`) while a child holds tasks it claimed ahead.
//!
//! A paused queue's claims hand out nothing (the transport sees to that), so an idle child
//! simply waits on [`Transport::wait`](rex_transport::Transport::wait) until a resume wakes
//! it. But a child may hold a window of tasks claimed before the pause and not started yet:
//! between two of them it asks the transport whether its queue is paused — at most every
//! [`PAUSE_CHECK`], as a successful claim also says the queue was not paused when it was
//! made — and when it is, gives the rest of the window back uncharged and starts none of
//! them. The task running when the pause came finishes. A transport that cannot pause queues
//! is never asked again.

use std::time::{Duration, Instant};

use rex_transport::{Settlement, TransportError};

use super::Consumer;

/// At most this often a child holding unstarted tasks asks whether its queue was paused.
pub const PAUSE_CHECK: Duration = Duration::from_millis(500);

/// What the child knows of its queue's pause flag.
#[derive(Debug)]
pub(super) struct PauseWatch {
    /// When the flag was last known to be off (a check, or a claim that returned tasks).
    checked: Option<Instant>,
    /// False once the transport said it cannot pause queues.
    supported: bool,
}

impl Default for PauseWatch {
    fn default() -> Self {
        PauseWatch {
            checked: None,
            supported: true,
        }
    }
}

impl PauseWatch {
    /// A claim returned tasks: the queue was not paused then.
    pub(super) fn claimed(&mut self) {
        self.checked = Some(Instant::now());
    }

    /// Whether it is time to ask again.
    fn due(&self, now: Instant) -> bool {
        self.supported
            && self
                .checked
                .is_none_or(|at| now.duration_since(at) >= PAUSE_CHECK)
    }
}

impl Consumer {
    /// Before starting the next task of its window: when the queue has been paused since the
    /// claim, give back every task not started (uncharged) and record it with the outcomes
    /// so far. Returns whether it did.
    pub(super) fn release_if_paused(&mut self) -> bool {
        if self.claimed.is_empty() || !self.pause.due(Instant::now()) || !self.queue_paused() {
            return false;
        }
        let held = self.claimed.len();
        for task in self.claimed.drain(..) {
            self.pending.push(Settlement::Release {
                lease: task.lease(),
                reason: "queue paused".into(),
            });
        }
        self.pending_since.get_or_insert_with(Instant::now);
        self.logger.info(format_args!(
            "Queue {} is paused; giving back {held} task(s) claimed ahead",
            self.queue
        ));
        // Recorded now, so that another process sees them pending; on failure they wait for
        // the next exchange with the rest.
        if let Err(e) = self.exchange(0) {
            self.logger
                .debug(format_args!("Cannot record the tasks given back yet: {e}"));
        }
        true
    }

    /// Ask the transport; an error (an outage, reported by the next claim) counts as not
    /// paused, `Unsupported` as never paused.
    fn queue_paused(&mut self) -> bool {
        let answer = self.rt.block_on(self.transport.paused());
        self.pause.checked = Some(Instant::now());
        match answer {
            Ok(queues) => queues.contains(&self.queue),
            Err(TransportError::Unsupported(why)) => {
                self.pause.supported = false;
                self.logger
                    .debug(format_args!("Not watching for pauses: {why}"));
                false
            }
            Err(e) => {
                self.logger
                    .debug(format_args!("Cannot tell whether the queue is paused: {e}"));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_asked_for_at_most_every_half_second_after_a_claim() {
        let mut watch = PauseWatch::default();
        let now = Instant::now();
        assert!(watch.due(now), "nothing known yet");
        watch.claimed();
        assert!(!watch.due(Instant::now()));
        assert!(watch.due(Instant::now() + PAUSE_CHECK));
        watch.supported = false;
        assert!(!watch.due(Instant::now() + PAUSE_CHECK * 10));
    }
}
