//! The claim window: how many tasks a child claims in one batch.
//!
//! It starts at 1 — a shallow queue is shared fairly between consumers and a task submitted to
//! an idle queue starts as soon as it would one at a time — and doubles while full batches
//! keep coming, up to the queue's `prefetch`. A partial batch halves it, an empty claim
//! resets it. It is also kept small enough that a batch's work takes about
//! [`BATCH_BUDGET`] at the tasks' mean run time, so slow tasks are not hoarded by one child
//! while another is idle, and the completions of a batch are recorded soon.

use std::time::Duration;

/// About how long the tasks of one batch should take to run.
pub const BATCH_BUDGET: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Window {
    size: usize,
    cap: usize,
    /// Exponentially weighted mean run time of a task, in seconds.
    mean_run: Option<f64>,
}

impl Window {
    /// A window of 1 that may grow to `cap` (at least 1).
    pub fn new(cap: usize) -> Window {
        Window {
            size: 1,
            cap: cap.max(1),
            mean_run: None,
        }
    }

    /// How many tasks to ask for now.
    pub fn size(&self) -> usize {
        let by_time = match self.mean_run {
            Some(mean) if mean > 0.0 => (BATCH_BUDGET.as_secs_f64() / mean).floor() as usize,
            _ => self.cap,
        };
        self.size.min(by_time).clamp(1, self.cap)
    }

    /// A claim that asked for `asked` tasks got `got`.
    pub fn claimed(&mut self, asked: usize, got: usize) {
        self.size = if got == 0 {
            1
        } else if got >= asked {
            (asked * 2).min(self.cap)
        } else {
            (asked / 2).max(1)
        };
    }

    /// A task ran for `took`.
    pub fn ran(&mut self, took: Duration) {
        let took = took.as_secs_f64();
        self.mean_run = Some(match self.mean_run {
            Some(mean) => mean * 0.8 + took * 0.2,
            None => took,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_while_batches_are_full_and_falls_back_when_the_queue_runs_dry() {
        let mut w = Window::new(64);
        let mut sizes = vec![];
        for _ in 0..8 {
            let asked = w.size();
            sizes.push(asked);
            w.claimed(asked, asked);
        }
        assert_eq!(sizes, [1, 2, 4, 8, 16, 32, 64, 64]);
        w.claimed(64, 10);
        assert_eq!(w.size(), 32);
        w.claimed(32, 0);
        assert_eq!(w.size(), 1);
    }

    #[test]
    fn slow_tasks_keep_the_window_small() {
        let mut w = Window::new(64);
        for _ in 0..10 {
            let asked = w.size();
            w.claimed(asked, asked);
        }
        assert_eq!(w.size(), 64);
        w.ran(Duration::from_millis(30));
        assert_eq!(w.size(), 3, "about 100 ms of work");
        for _ in 0..20 {
            w.ran(Duration::from_secs(1));
        }
        assert_eq!(w.size(), 1);
    }

    proptest! {
        #[test]
        fn the_window_stays_within_one_and_the_cap(
            cap in 1usize..1000,
            steps in proptest::collection::vec((0usize..2000, 0u64..500_000), 0..50),
        ) {
            let mut w = Window::new(cap);
            for (got, micros) in steps {
                let asked = w.size();
                prop_assert!((1..=cap).contains(&asked));
                w.claimed(asked, got.min(asked));
                w.ran(Duration::from_micros(micros));
            }
            prop_assert!((1..=cap).contains(&w.size()));
        }
    }
}
