//! The conformance suite: the delivery contract as executable cases, run against every
//! transport by [`conformance_suite!`](crate::conformance_suite).
//!
//! ```no_run
//! use std::sync::Arc;
//! use rex_transport::{Transport, memory::MemoryTransport};
//!
//! // Expands to `mod memory { #[tokio::test] async fn case_...() ... }`, one test per case.
//! rex_transport_conformance::conformance_suite!(memory, async { Arc::new(MemoryTransport::new()) as Arc<dyn Transport> });
//! ```
//!
//! The fixture expression is evaluated once per case. It yields an `Arc<dyn Transport>` or a
//! `(Arc<dyn Transport>, guard)` pair whose guard (a temporary directory, a container...) lives
//! until the case ends, or an `Option` of either: `None` skips the case with a message (how
//! server transports run without their server). The calling crate needs `tokio` (with `macros` and `rt`).
//!
//! Every case names its queues and owners with a random suffix, so several runs may share one
//! broker. Two things still see the whole broker: [`case_stats`] only checks the rows of its
//! own queues, and [`case_retry_failed`] ends with `retry_failed(All)`, which also moves other
//! concurrent runs' failed tasks — give concurrent runs separate databases or vhosts.
//!
//! Cases panic on failure, like any test. Sleeps in cases only let *data* age (a delayed
//! `run_at`, a short lease); nothing waits for another task to get somewhere.
//!
//! # Files
//!
//! * `lib.rs` (this file) — [`conformance_suite!`](crate::conformance_suite), [`Fixture`], and
//!   the helpers every case uses ([`unique`] names, submit/claim shorthands) or that a backend's
//!   own tests reuse ([`claim_concurrently`], [`assert_claimed_once`]).
//! * `submit.rs` — payloads, queue-name validation, idempotency keys, delayed submits.
//! * `claim_order.rs` — FIFO claims, queue isolation, concurrent claimers.
//! * `leases.rs` — leases and fencing: stale leases, `owned_by`, `expired`, `renew`.
//! * `settle.rs` — `complete` (with submits), `settle_and_claim` with a window of one,
//!   `release`.
//! * `batches.rs` — `claim_batch`, `settle` and `settle_and_claim` of several tasks (mixed
//!   stale and current tokens, partial batches), `submit_batch`.
//! * `failures.rs` — `fail` with and without retry, `retry_failed`, `purge`.
//! * `schedules.rs` — schedule fires, `last_fire`, `prune_schedule_keys`, pause flags.
//! * `stats.rs` — `stats`.
//! * `console.rs` — what the operator console needs: pause flags, task lookup, filtered
//!   listings with keyset pagination, counts, purging selected failed tasks, master heartbeats,
//!   cancelling tasks.
//! * `completed.rs` — completed tasks kept with their results, and pruned.
//! * `events.rs` — lifecycle events published through `events::tap`, seen by a follower.
//! * `history.rs` — `record_history` and `history`: per-minute counters that add up.
//! * `wake.rs` — `wait`.

mod batches;
mod claim_order;
mod completed;
mod console;
mod events;
mod failures;
mod history;
mod leases;
mod schedules;
mod settle;
mod stats;
mod submit;
mod wake;

pub use batches::{
    case_claim_batch_order, case_settle_and_claim_batch, case_settle_batch_mixed_tokens,
    case_settle_batch_validates_submits, case_submit_batch,
};
pub use claim_order::{
    case_concurrent_claimers, case_due_time_then_submission_order, case_original_sequence,
};
pub use completed::{case_completed_kept_with_result, case_prune_completed};
pub use console::{
    case_cancel, case_list_filters_and_pages, case_master_heartbeats, case_pause_stops_claims,
    case_purge_failed_selected, case_resume_then_wait_returns, case_task_lookup,
};
pub use events::case_events_followed;
pub use failures::{case_fail_with_retry, case_fail_without_retry, case_purge, case_retry_failed};
pub use history::case_history_adds_up;
pub use leases::{case_claim_leases, case_expired, case_owned_by, case_renew, case_stale_lease};
pub use schedules::{case_prune_schedule_keys, case_schedule_fires, case_schedule_pause};
pub use settle::{
    case_complete_and_claim, case_complete_with_submits, case_release_keeps_attempt,
    case_release_keeps_place,
};
pub use stats::case_stats;
pub use submit::{
    case_delayed_submit, case_idempotency_key, case_invalid_queue_names, case_payload_fidelity,
    case_payload_keys_sorted,
};
pub use wake::case_wait_returns;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rex_transport::{
    Failure, Payload, QueueCounts, SubmitOptions, Task, TaskId, Transport, TransportError,
    normalize_payload,
};
use serde_json::{Value, json};

/// What a conformance fixture yields: the transport under test, plus anything to keep alive;
/// `None` skips the case (a server transport whose `REX_TEST_*` variable is unset).
pub trait Fixture {
    fn transport(&self) -> Option<Arc<dyn Transport>>;
}

impl Fixture for Arc<dyn Transport> {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(Arc::clone(self))
    }
}

impl<G> Fixture for (Arc<dyn Transport>, G) {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(Arc::clone(&self.0))
    }
}

impl<F: Fixture> Fixture for Option<F> {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        self.as_ref().and_then(Fixture::transport)
    }
}

/// `conformance_suite!(module_name, fixture_future)`: a module with one `#[tokio::test]` per
/// case of this crate. See the [crate docs](crate).
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $fixture:expr $(,)?) => {
        $crate::conformance_suite!(@cases $module, $fixture;
            case_original_sequence,
            case_history_adds_up,
            case_cancel,
            case_payload_keys_sorted,
            case_payload_fidelity,
            case_invalid_queue_names,
            case_claim_leases,
            case_complete_with_submits,
            case_complete_and_claim,
            case_stale_lease,
            case_fail_with_retry,
            case_fail_without_retry,
            case_retry_failed,
            case_purge,
            case_release_keeps_attempt,
            case_release_keeps_place,
            case_owned_by,
            case_expired,
            case_renew,
            case_idempotency_key,
            case_schedule_fires,
            case_prune_schedule_keys,
            case_schedule_pause,
            case_delayed_submit,
            case_due_time_then_submission_order,
            case_stats,
            case_wait_returns,
            case_concurrent_claimers,
            case_claim_batch_order,
            case_settle_batch_mixed_tokens,
            case_settle_batch_validates_submits,
            case_settle_and_claim_batch,
            case_submit_batch,
            case_pause_stops_claims,
            case_resume_then_wait_returns,
            case_task_lookup,
            case_list_filters_and_pages,
            case_purge_failed_selected,
            case_master_heartbeats,
            case_completed_kept_with_result,
            case_prune_completed,
            case_events_followed,
        );
    };
    (@cases $module:ident, $fixture:expr; $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test]
                async fn $case() {
                    let fixture = $fixture.await;
                    match $crate::Fixture::transport(&fixture) {
                        Some(transport) => $crate::$case(transport).await,
                        None => eprintln!("{}::{}: skipped (no server configured)", stringify!($module), stringify!($case)),
                    }
                    drop(fixture);
                }
            )*
        }
    };
}

/// Long enough never to expire during a case.
pub(crate) const LEASE: Duration = Duration::from_secs(600);

/// `base` plus a random suffix: a valid queue (or owner) name no other run uses.
pub fn unique(base: &str) -> String {
    let suffix: String = std::iter::repeat_with(fastrand::lowercase)
        .take(12)
        .collect();
    format!("{base}_{suffix}")
}

fn payload(value: Value) -> Payload {
    normalize_payload(value).expect("test payloads are objects")
}

async fn submit(t: &Arc<dyn Transport>, queue: &str, value: Value) -> TaskId {
    submit_with(t, queue, value, SubmitOptions::default())
        .await
        .expect("no idempotency key")
}

async fn submit_with(
    t: &Arc<dyn Transport>,
    queue: &str,
    value: Value,
    opts: SubmitOptions,
) -> Option<TaskId> {
    t.submit(queue, payload(value), &opts)
        .await
        .expect("submit")
}

async fn claim(t: &Arc<dyn Transport>, queue: &str, owner: &str) -> Option<Task> {
    t.claim(queue, owner, LEASE).await.expect("claim")
}

async fn counts(t: &Arc<dyn Transport>, queue: &str) -> QueueCounts {
    t.counts(queue).await.expect("counts")
}

/// Submit, claim and fail a task for good; returns its id.
async fn failed_task(t: &Arc<dyn Transport>, queue: &str, owner: &str) -> TaskId {
    let id = submit(t, queue, json!({})).await;
    let task = claim(t, queue, owner).await.expect("claimable");
    assert_eq!(task.id, id);
    assert!(
        t.fail(&task.lease(), &Failure::error("Oops!"), None)
            .await
            .expect("fail")
    );
    id
}

fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|task| task.id).collect()
}

fn assert_invalid_queue<T: std::fmt::Debug>(result: rex_transport::Result<T>) {
    match result {
        Err(TransportError::InvalidQueueName(name)) => assert_eq!(name, "BADNAME"),
        other => panic!("expected an invalid queue name error, got {other:?}"),
    }
}

fn ready(n: u64) -> QueueCounts {
    QueueCounts {
        ready: n,
        ..QueueCounts::default()
    }
}

/// `claimers` tasks, spread over `instances` (as the current runtime's tasks), each claiming
/// and completing until `queue` is empty. Returns every id claimed, repeats included.
pub async fn claim_concurrently(
    instances: &[Arc<dyn Transport>],
    queue: &str,
    claimers: usize,
) -> Vec<TaskId> {
    let claimers: Vec<_> = (0..claimers)
        .map(|i| {
            let t = Arc::clone(&instances[i % instances.len()]);
            let queue = queue.to_string();
            tokio::spawn(async move {
                let owner = unique(&format!("claimer{i}"));
                let mut got = Vec::new();
                while let Some(task) = claim(&t, &queue, &owner).await {
                    got.push(task.id);
                    tokio::task::yield_now().await; // let the others claim meanwhile
                    assert!(
                        t.complete(&task.lease(), &[]).await.expect("complete"),
                        "the lease is ours"
                    );
                }
                got
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.expect("claimer panicked"));
    }
    claimed
}

/// Every submitted task was claimed, none twice.
pub fn assert_claimed_once(claimed: Vec<TaskId>, submitted: &BTreeSet<TaskId>) {
    assert_eq!(claimed.len(), submitted.len(), "no task claimed twice");
    assert_eq!(
        &claimed.into_iter().collect::<BTreeSet<_>>(),
        submitted,
        "every task claimed"
    );
}
