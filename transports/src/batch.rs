//! The batch operations of [`Transport`] done one task at a time: the trait's default
//! methods, and what a backend that batches only the common cases falls back to.
//!
//! Every function here keeps the batch contract: claim order, one result per settlement in
//! order, and a batch's submits validated before anything is applied.

use std::time::{Duration, SystemTime};

use crate::{
    Result, Settlement, Submit, SubmitOptions, Task, TaskId, Transport, validate_queue_name,
};

/// Validate the queue names of every follow-up submit in `batch` (before any is applied).
pub fn validate_submits(batch: &[Settlement]) -> Result<()> {
    for settlement in batch {
        for submit in settlement.submits() {
            validate_queue_name(&submit.queue)?;
            crate::check_payload(&submit.payload)?;
        }
    }
    Ok(())
}

/// [`Transport::claim_batch`] as repeated claims.
pub async fn claim_each<T: Transport + ?Sized>(
    t: &T,
    queue: &str,
    owner: &str,
    lease: Duration,
    max: usize,
) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    while tasks.len() < max.max(1) {
        match t.claim(queue, owner, lease).await? {
            Some(task) => tasks.push(task),
            None => break,
        }
    }
    Ok(tasks)
}

/// [`Transport::settle`] as one call per settlement.
pub async fn settle_each<T: Transport + ?Sized>(t: &T, batch: &[Settlement]) -> Result<Vec<bool>> {
    validate_submits(batch)?;
    let mut applied = Vec::with_capacity(batch.len());
    for settlement in batch {
        applied.push(match settlement {
            Settlement::Complete { lease, submits, .. } => t.complete(lease, submits).await?,
            Settlement::Fail {
                lease,
                failure,
                retry_at,
            } => t.fail(lease, failure, *retry_at).await?,
            Settlement::Release { lease, reason } => t.release(lease, reason).await?,
        });
    }
    Ok(applied)
}

/// [`Transport::settle_and_claim`] as a settle, then a claim whose error is swallowed.
pub async fn settle_then_claim<T: Transport + ?Sized>(
    t: &T,
    batch: &[Settlement],
    queue: &str,
    owner: &str,
    lease: Duration,
    max: usize,
) -> Result<(Vec<bool>, Vec<Task>)> {
    let applied = t.settle(batch).await?;
    // A failed claim is the caller's to see (an outage to back off from, a reply that may
    // have leased tasks): the settlements it sends again come back stale, changing nothing.
    let next = if max == 0 {
        Vec::new()
    } else {
        t.claim_batch(queue, owner, lease, max).await?
    };
    Ok((applied, next))
}

/// [`Transport::submit_batch`] as one submit per task.
pub async fn submit_each<T: Transport + ?Sized>(
    t: &T,
    tasks: &[Submit],
    run_at: Option<SystemTime>,
) -> Result<Vec<TaskId>> {
    for task in tasks {
        validate_queue_name(&task.queue)?;
    }
    let opts = SubmitOptions {
        run_at,
        idempotency_key: None,
    };
    let mut ids = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Some(id) = t.submit(&task.queue, task.payload.clone(), &opts).await? {
            ids.push(id);
        }
    }
    Ok(ids)
}
