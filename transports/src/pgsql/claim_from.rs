//! Where a child's next claim starts. Claimed tasks leave dead entries at the head of the
//! claim-order index until a vacuum removes them, and a claim that starts at the head walks
//! them all: with a large backlog, thousands of pages per claim between two autovacuums
//! (`docs/performance.md`). So after a full window, the next claim of the same queue starts
//! just after the last task it got, in claim order.
//!
//! A task can become due behind that point: released back to its place (by this process, a
//! master, or another child), or submitted by a host whose clock is behind. A claim scans
//! from the head again whenever the window was not full, after this process released a task
//! of the queue, and at least every [`FULL_SCAN_EVERY`]: such a task waits at most that long
//! beyond its turn.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::TaskId;

/// The longest a claim keeps starting after the previous one's end.
pub(super) const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);

/// A position in the claim order: `(run_at, id)`.
pub(super) type Position = (SystemTime, TaskId);

/// Before every task (times are stored from 1970 on, `rows::clamp_time`). A claim always
/// bounds its scan, from here at the head, so that its plan (custom or generic) always reads
/// the bound as an index condition rather than a filter.
pub(super) const HEAD: Position = (SystemTime::UNIX_EPOCH, TaskId::MIN);

#[derive(Default)]
pub(super) struct ClaimFrom {
    queues: Mutex<HashMap<String, Start>>,
}

struct Start {
    after: Position,
    /// When a claim of this queue last scanned from the head.
    scanned_at: Instant,
}

impl ClaimFrom {
    /// Where the next claim of `queue` starts (`None`: at the head).
    pub(super) fn next(&self, queue: &str) -> Option<Position> {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .get(queue)
            .filter(|start| start.scanned_at.elapsed() < FULL_SCAN_EVERY)
            .map(|start| start.after)
    }

    /// A claim of `queue` that started at `from` got `claimed` tasks (the last of which, in
    /// claim order, is `last`) of the `window` it asked for.
    pub(super) fn claimed(
        &self,
        queue: &str,
        from: Option<Position>,
        window: usize,
        claimed: usize,
        last: Option<Position>,
    ) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            // A full window of more than one: more are likely due after it.
            Some(last) if window > 1 && claimed == window => {
                let scanned_at = match (from, queues.get(queue)) {
                    (Some(_), Some(start)) => start.scanned_at,
                    _ => Instant::now(),
                };
                queues.insert(
                    queue.to_string(),
                    Start {
                        after: last,
                        scanned_at,
                    },
                );
            }
            _ => {
                queues.remove(queue);
            }
        }
    }

    /// This process put a task back to its place (of a queue it may not know): the next claim
    /// of every queue starts at the head.
    pub(super) fn released(&self) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u64) -> Position {
        (SystemTime::UNIX_EPOCH + Duration::from_secs(n), n as TaskId)
    }

    #[test]
    fn only_a_full_window_moves_the_start() {
        let from = ClaimFrom::default();
        assert_eq!(from.next("q"), None);
        from.claimed("q", None, 64, 64, Some(at(64)));
        assert_eq!(from.next("q"), Some(at(64)));
        assert_eq!(from.next("other"), None);
        from.claimed("q", Some(at(64)), 64, 64, Some(at(128)));
        assert_eq!(from.next("q"), Some(at(128)));
        from.claimed("q", Some(at(128)), 64, 10, Some(at(138)));
        assert_eq!(
            from.next("q"),
            None,
            "a partial window scans from the head next"
        );
        from.claimed("q", None, 1, 1, Some(at(1)));
        assert_eq!(
            from.next("q"),
            None,
            "a window of one always scans from the head"
        );
    }

    #[test]
    fn a_release_sends_the_next_claim_to_the_head() {
        let from = ClaimFrom::default();
        from.claimed("q", None, 8, 8, Some(at(8)));
        from.claimed("r", None, 8, 8, Some(at(8)));
        from.released();
        assert_eq!(from.next("q"), None);
        assert_eq!(from.next("r"), None);
    }
}
