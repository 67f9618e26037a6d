//! The idempotency keys of schedule fires: every fire is submitted under its key, so several
//! schedulers enqueue it once; the keys of runs an operator asked for; schedule ids.

use std::time::SystemTime;

use crate::TransportError;
use crate::task::{excerpt, from_epoch_ms, to_epoch_ms};

/// The longest schedule id.
pub const MAX_SCHEDULE_ID: usize = 64;

/// A schedule id (what pause flags and keys are named by): 1 to [`MAX_SCHEDULE_ID`] ASCII
/// letters, digits, `_` and `-`.
pub fn validate_schedule_id(id: &str) -> Result<(), TransportError> {
    let ok = (1..=MAX_SCHEDULE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TransportError::InvalidScheduleId(excerpt(id, 80)))
    }
}

/// The idempotency key of a run of `schedule` asked for by an operator ("run now"): one per
/// `nonce` (one per click), so a click is enqueued once whoever receives it how often. Not a
/// fire: [`schedule_key_time`] and `last_fire` do not see it.
pub fn manual_run_key(schedule: &str, nonce: &str) -> String {
    format!("manual:{schedule}:{nonce}")
}

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
    fn schedule_ids_are_short_plain_words() {
        for good in ["a", "0f3c9a1e", "nightly-report_2"] {
            assert!(validate_schedule_id(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a:b", "é", &"x".repeat(65)] {
            assert!(validate_schedule_id(bad).is_err(), "{bad:?}");
        }
        assert!(!manual_run_key("abc", "n1").starts_with(&schedule_key_prefix("abc")));
    }

    #[test]
    fn keys_sort_by_time_and_round_trip() {
        let early = from_epoch_ms(999);
        let late = from_epoch_ms(1_795_000_000_000);
        assert!(schedule_key("abc", early) < schedule_key("abc", late));
        assert_eq!(schedule_key_time(&schedule_key("abc", late)), Some(late));
        assert_eq!(schedule_key("abc", early), "schedule:abc:0000000000000999");
    }
}
