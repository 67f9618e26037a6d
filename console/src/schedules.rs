//! The project's schedules (`asynctask_scheduled_workers`): what each runs, its rule, its last
//! fire (the transport's schedule keys) and its next (the rule, computed here), whether it is
//! paused; and the actions on them, for the page `/schedules` and the API.
//!
//! *Run now* enqueues one run of the schedule's payload on its queue under the idempotency key
//! `manual:<id>:<nonce>`: the page draws a fresh nonce for every form it renders, so a click
//! sent twice (a double click, a resent form, two consoles behind a balancer) enqueues one
//! task. It is not a fire: the last fire and the next are unchanged. *Pause* sets the
//! schedule's flag in the transport; every scheduler skips its fires until it is resumed.

use std::time::SystemTime;

use rex_transport::{SubmitOptions, TaskId, TransportError, manual_run_key, validate_schedule_id};
use serde::{Deserialize, Serialize};

use crate::server::Shared;
use crate::view::{ApiError, format_time};
use crate::{Config, Schedule};

/// One schedule as the page and `/api/schedules` show it.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleView {
    pub id: String,
    pub name: String,
    pub queue: String,
    pub rule: String,
    /// Epoch ms, and as text (UTC).
    pub last_fire_ms: Option<i64>,
    pub last_fire: Option<String>,
    pub next_fire_ms: Option<i64>,
    pub next_fire: Option<String>,
    /// `None` when the transport cannot pause schedules.
    pub paused: Option<bool>,
}

/// Every schedule, and why pause flags are unknown (when they are).
pub async fn views(state: &Shared) -> Result<(Vec<ScheduleView>, Option<String>), TransportError> {
    let transport = &state.config.transport;
    let (paused, problem) = match transport.paused_schedules().await {
        Ok(paused) => (Some(paused), None),
        Err(TransportError::Unsupported(why)) => (None, Some(why)),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut views = Vec::with_capacity(state.config.schedules.len());
    for schedule in &state.config.schedules {
        let last = transport.last_fire(&schedule.id).await?;
        let next = (schedule.next_fire)(now);
        views.push(ScheduleView {
            id: schedule.id.clone(),
            name: schedule.name.clone(),
            queue: schedule.queue.clone(),
            rule: schedule.rule.clone(),
            last_fire_ms: last.map(rex_transport::task::to_epoch_ms),
            last_fire: last.map(format_time),
            next_fire_ms: next.map(rex_transport::task::to_epoch_ms),
            next_fire: next.map(format_time),
            paused: paused.as_ref().map(|p| p.contains(&schedule.id)),
        });
    }
    Ok((views, problem))
}

/// The configured schedule `id`.
pub fn find<'a>(config: &'a Config, id: &str) -> Result<&'a Schedule, ApiError> {
    validate_schedule_id(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    config
        .schedules
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no schedule {id}")))
}

/// What a run-now request carries: the click's nonce (a fresh one when absent: every such
/// request enqueues).
#[derive(Debug, Default, Deserialize)]
pub struct RunNow {
    pub nonce: Option<String>,
}

/// A new nonce: 16 random hex digits.
pub fn nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Enqueue one run of `schedule` for this click. `None` when the click was enqueued already.
pub async fn run_now(
    state: &Shared,
    schedule: &Schedule,
    nonce: Option<&str>,
) -> Result<Option<TaskId>, ApiError> {
    let nonce = match nonce {
        Some(nonce) => {
            // Same rules as an id: it goes into a key.
            validate_schedule_id(nonce).map_err(|_| {
                ApiError::bad_request("the nonce must be 1 to 64 letters, digits, '_' and '-'")
            })?;
            nonce.to_string()
        }
        None => self::nonce(),
    };
    let opts = SubmitOptions {
        run_at: None,
        idempotency_key: Some(manual_run_key(&schedule.id, &nonce)),
    };
    let id = state
        .config
        .transport
        .submit(&schedule.queue, schedule.payload.clone(), &opts)
        .await?;
    state.snapshot.invalidate();
    Ok(id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonces_are_valid_key_parts_and_differ() {
        let (a, b) = (super::nonce(), super::nonce());
        assert!(rex_transport::validate_schedule_id(&a).is_ok());
        assert_ne!(a, b);
    }
}
