//! Restart policy for a queue's child.
//!
//! A child that dies while it made progress (it held or finished a task) is relaunched at
//! once: the crash is charged to the task by the retry policy, not to the queue. A child that
//! dies without making progress (crash on start, broken plugin, unreachable transport) counts as
//! a failure in a row; the first relaunch is immediate, then the delay doubles from 500 ms up
//! to 30 s, with jitter so many queues do not restart in lockstep. Progress resets the count.

use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A child that stayed up this long before dying counts as having made progress.
pub const HEALTHY_UPTIME: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Restarts {
    failures: u32,
}

impl Restarts {
    /// Record a death; returns how long to wait before the next launch.
    pub fn on_death(&mut self, made_progress: bool) -> Duration {
        if made_progress {
            self.failures = 0;
        }
        self.failures += 1;
        delay(self.failures)
    }

    /// The last death turned out to have followed progress after all (the master learnt only
    /// later that the child held a task): it counts as the first of a new run.
    pub fn progress_found(&mut self) {
        self.failures = self.failures.min(1);
    }

    /// Deaths in a row without progress.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

fn delay(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let base = FIRST_DELAY
        .saturating_mul(1 << (failures - 2).min(16))
        .min(MAX_DELAY);
    base.mul_f64(0.8 + fastrand::f64() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_is_immediate_then_backs_off_to_the_cap() {
        let mut r = Restarts::default();
        assert_eq!(r.on_death(false), Duration::ZERO);
        let d2 = r.on_death(false);
        assert!(
            d2 >= Duration::from_millis(400) && d2 <= FIRST_DELAY,
            "{d2:?}"
        );
        for _ in 0..20 {
            assert!(r.on_death(false) <= MAX_DELAY);
        }
        assert!(r.on_death(false) >= MAX_DELAY.mul_f64(0.8));
    }

    #[test]
    fn progress_found_later_resets_the_count_too() {
        let mut r = Restarts::default();
        for _ in 0..4 {
            r.on_death(false);
        }
        r.progress_found();
        assert_eq!(r.failures(), 1);
        // The next death without progress is the second in a row: the first backoff step.
        assert!(r.on_death(false) <= FIRST_DELAY);
        assert_eq!(r.failures(), 2);
    }

    #[test]
    fn progress_resets_the_count() {
        let mut r = Restarts::default();
        for _ in 0..5 {
            r.on_death(false);
        }
        assert_eq!(r.on_death(true), Duration::ZERO);
        assert_eq!(r.failures(), 1);
    }

    #[test]
    fn a_crash_looping_queue_restarts_at_most_ten_times_in_thirty_seconds() {
        let mut r = Restarts::default();
        let mut elapsed = Duration::ZERO;
        let mut starts = 1;
        while elapsed < Duration::from_secs(30) {
            elapsed += r.on_death(false);
            if elapsed < Duration::from_secs(30) {
                starts += 1;
            }
        }
        assert!(starts <= 10, "{starts} starts");
    }
}
