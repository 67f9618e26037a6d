//! A transport outage as a process lives it: how long to wait before the next attempt
//! (bounded exponential backoff with jitter, so that the children of many hosts do not retry
//! in step) and which failures to log — the first at once, then one summary line per
//! [`REPORT_EVERY`], then one line when the transport answers again. A minute of outage
//! writes three lines per child, and three for its master's lease upkeep, not one per attempt.

use std::time::{Duration, Instant};

use crate::logging::Logger;

/// The first wait after a failure; it doubles per consecutive failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// While an outage lasts, at most one line per this period.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(crate) struct Outage {
    /// Consecutive failed attempts.
    failures: u32,
    /// When the first of them failed.
    since: Option<Instant>,
    /// When a line was last written, and how many failures were not reported since.
    reported: Option<Instant>,
    unreported: u32,
    /// Set for jobs retried on timers of their own (the master's lease upkeep): the lines do
    /// not announce a wait.
    on_timers: bool,
}

/// What to do about one failed attempt: how long to wait, and the line to log, if any.
#[derive(Debug, PartialEq)]
pub(crate) struct Verdict {
    pub delay: Duration,
    pub report: Option<String>,
}

impl Outage {
    /// An outage seen by jobs that run on timers of their own, not on its backoff.
    pub(crate) fn on_timers() -> Outage {
        Outage {
            on_timers: true,
            ..Outage::default()
        }
    }

    /// Record a failed attempt at `now`; `error` is the transport's message.
    pub(crate) fn failed(&mut self, now: Instant, error: &str) -> Verdict {
        self.failures += 1;
        let since = *self.since.get_or_insert(now);
        let delay = backoff(self.failures, fastrand::f64());
        let retry = if self.on_timers {
            String::new()
        } else {
            format!("; retrying in {:.1}s", delay.as_secs_f64())
        };
        let report = match self.reported {
            None => Some(format!(
                "Transport error: {error}{retry} (while it lasts, one report per {}s)",
                REPORT_EVERY.as_secs()
            )),
            Some(at) if now.duration_since(at) >= REPORT_EVERY => Some(format!(
                "Transport still failing after {:.0}s ({} more failed attempts): {error}{retry}",
                now.duration_since(since).as_secs_f64(),
                self.unreported + 1
            )),
            Some(_) => None,
        };
        if report.is_some() {
            self.reported = Some(now);
            self.unreported = 0;
        } else {
            self.unreported += 1;
        }
        Verdict { delay, report }
    }

    /// The transport answered: the line to log if an outage just ended.
    pub(crate) fn recovered(&mut self, now: Instant) -> Option<String> {
        let since = self.since.take()?;
        let line = format!(
            "Transport available again after {:.1}s ({} failed attempts)",
            now.duration_since(since).as_secs_f64(),
            self.failures
        );
        *self = Outage {
            on_timers: self.on_timers,
            ..Outage::default()
        };
        Some(line)
    }

    /// [`Outage::failed`] now, its report logged as an error; returns the wait.
    pub(crate) fn failed_now(
        &mut self,
        logger: &Logger,
        error: &dyn std::fmt::Display,
    ) -> Duration {
        let verdict = self.failed(Instant::now(), &error.to_string());
        if let Some(line) = verdict.report {
            logger.error(format_args!("{line}"));
        }
        verdict.delay
    }

    /// [`Outage::recovered`] now, its line logged.
    pub(crate) fn recovered_now(&mut self, logger: &Logger) {
        if let Some(line) = self.recovered(Instant::now()) {
            logger.info(format_args!("{line}"));
        }
    }
}

/// The wait after `failures` consecutive failures, `jitter` in [0, 1): the capped exponential
/// delay scaled into its upper half.
fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = FIRST_DELAY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(MAX_DELAY)
        .mul_f64(0.5 + jitter.clamp(0.0, 1.0) * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_into_the_upper_half() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(4, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(100, 1.0), MAX_DELAY);
        assert_eq!(backoff(100, 0.0), MAX_DELAY / 2);
    }

    /// A minute of failures every 100 ms: the first is reported, then one line per period,
    /// then the recovery.
    #[test]
    fn a_long_outage_is_reported_at_a_bounded_rate() {
        let start = Instant::now();
        let mut outage = Outage::default();
        let mut lines = Vec::new();
        for i in 0..600u64 {
            let now = start + Duration::from_millis(100 * i);
            if let Some(line) = outage.failed(now, "disk full").report {
                lines.push(line);
            }
        }
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("Transport error: disk full; retrying in "));
        assert!(
            lines[1].starts_with(
                "Transport still failing after 30s (300 more failed attempts): disk full"
            ),
            "{}",
            lines[1]
        );
        let end = start + Duration::from_secs(61);
        let line = outage.recovered(end).expect("an outage ended");
        assert_eq!(
            line,
            "Transport available again after 61.0s (600 failed attempts)"
        );
        assert_eq!(outage.recovered(end), None);
        // The next failure starts a new outage, reported at once.
        assert!(outage.failed(end, "again").report.is_some());
    }
}
