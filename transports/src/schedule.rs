//! The idempotency keys of schedule fires: every fire is submitted under its key, so several
//! schedulers enqueue it once.

use std::time::SystemTime;

use crate::task::{from_epoch_ms, to_epoch_ms};

/// The idempotency key of one fire of a schedule: submitting every fire under its key makes
/// several schedulers enqueue it once. The time is zero-padded so keys sort by time.
pub fn schedule_key(schedule: &str, at: SystemTime) -> String {
    format!(
        "{}{:016}",
        schedule_key_prefix(schedule),
        to_epoch_ms(at).max(0)
    )
}

/// Every key of `schedule` starts with this.
pub fn schedule_key_prefix(schedule: &str) -> String {
    format!("schedule:{schedule}:")
}

/// The fire time in a key made by [`schedule_key`].
pub fn schedule_key_time(key: &str) -> Option<SystemTime> {
    key.rsplit(':')
        .next()?
        .parse::<i64>()
        .ok()
        .map(from_epoch_ms)
}

#[cfg(test)]
mod schedule_key_tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_and_round_trip() {
        let early = from_epoch_ms(999);
        let late = from_epoch_ms(1_795_000_000_000);
        assert!(schedule_key("abc", early) < schedule_key("abc", late));
        assert_eq!(schedule_key_time(&schedule_key("abc", late)), Some(late));
        assert_eq!(schedule_key("abc", early), "schedule:abc:0000000000000999");
    }
}
