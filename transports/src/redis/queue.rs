//! Producers and consumers: submit, claim, settle (complete, fail, release), their batches
//! (`claim_batch`, `settle`, `settle_and_claim`, `submit_batch`) and the lease bookkeeping of
//! the worker and its supervisor (`owned_by`, `expired`, `renew`). Each is one script (a batch
//! too), so a state change happens at once or not at all.

use std::time::{Duration, SystemTime};

use ::redis::Value;

use super::RedisTransport;
use super::scripts::SCRIPTS;
use crate::batch::validate_submits;
use crate::task::{add_ms, now_ms, to_epoch_ms};
use crate::{
    Failure, FailureKind, Lease, Payload, Result, Settlement, Submit, SubmitOptions, Task, TaskId,
    validate_queue_name,
};

/// Where the lease-token counter starts when it is missing (see the module docs).
fn token_seed(now: i64) -> String {
    now.saturating_mul(1000).to_string()
}

/// A failure's outcome as the scripts name it.
pub(super) fn outcome(failure: &Failure) -> &'static str {
    match failure.kind {
        FailureKind::Error => "error",
        FailureKind::Crash => "crash",
        FailureKind::Cancelled => "cancelled",
    }
}

/// A claim window for a script's ARGV, within what `ZPOPMIN` takes.
fn window(max: usize) -> String {
    max.min(u32::MAX as usize).to_string()
}

impl RedisTransport {
    pub(super) async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let run_at = opts.run_at.map_or(now, to_epoch_ms);
        let (has_key, key) = match &opts.idempotency_key {
            Some(key) => ("1", key.as_str()),
            None => ("0", ""),
        };
        let args = [
            queue.to_string(),
            self.encode(&payload)?,
            run_at.to_string(),
            now.to_string(),
            has_key.to_string(),
            key.to_string(),
        ];
        let id: Value = self.eval(&SCRIPTS.submit, &args, false).await?;
        match id {
            Value::Nil => Ok(None),
            id => self.number(&id, "id").map(Some),
        }
    }

    /// A batch of one.
    pub(super) async fn claim(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Task>> {
        Ok(self.claim_batch(queue, owner, lease, 1).await?.pop())
    }

    pub(super) async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        let mut args = vec![
            lease.id.to_string(),
            lease.token.to_string(),
            now_ms().to_string(),
        ];
        self.push_submits(&mut args, submits)?;
        let done: i64 = self.eval(&SCRIPTS.complete, &args, false).await?;
        Ok(done == 1)
    }

    /// Up to `max` tasks in claim order: one script.
    pub(super) async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let args = [
            queue.to_string(),
            owner.to_string(),
            add_ms(now, lease).to_string(),
            now.to_string(),
            token_seed(now),
            window(max.max(1)),
        ];
        let rows: Vec<Value> = self.eval(&SCRIPTS.claim_batch, &args, false).await?;
        self.claimed_rows(&rows)
    }

    /// Every settlement of `batch` in one script, each fenced by its own token.
    pub(super) async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        validate_submits(batch)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![now_ms().to_string()];
        self.push_settlements(&mut args, batch)?;
        let reply: Vec<Value> = self.eval(&SCRIPTS.settle, &args, false).await?;
        self.applied(&reply, batch.len())
    }

    /// `settle`, then up to `max` claims, in one script: one round trip per batch for a busy
    /// consumer. The claim part never fails the call (the script runs it under `pcall`, and a
    /// reply of it that cannot be read counts as no task).
    pub(super) async fn settle_and_claim(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease_for: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        validate_submits(batch)?;
        validate_queue_name(queue)?;
        let now = now_ms();
        let mut args = vec![
            now.to_string(),
            queue.to_string(),
            owner.to_string(),
            add_ms(now, lease_for).to_string(),
            token_seed(now),
            window(max),
        ];
        self.push_settlements(&mut args, batch)?;
        let reply: Vec<Value> = self.eval(&SCRIPTS.settle_and_claim, &args, false).await?;
        match reply.as_slice() {
            [Value::Array(applied), claimed] => {
                let applied = self.applied(applied, batch.len())?;
                let claimed = match claimed {
                    Value::Array(rows) => self.claimed_rows(rows).unwrap_or_default(),
                    _ => Vec::new(),
                };
                Ok((applied, claimed))
            }
            _ => Err(self.corrupt(format_args!("settle_and_claim returned {reply:?}"))),
        }
    }

    /// All of `tasks` in one script, ids in the order given.
    pub(super) async fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        for task in tasks {
            validate_queue_name(&task.queue)?;
        }
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut args = Vec::with_capacity(2 + 2 * tasks.len());
        args.push(run_at.map_or(now, to_epoch_ms).to_string());
        args.push(now.to_string());
        for task in tasks {
            args.push(task.queue.clone());
            args.push(self.encode(&task.payload)?);
        }
        let ids: Vec<Value> = self.eval(&SCRIPTS.submit_batch, &args, false).await?;
        if ids.len() != tasks.len() {
            return Err(self.corrupt(format_args!(
                "submit_batch returned {} ids for {} tasks",
                ids.len(),
                tasks.len()
            )));
        }
        ids.iter().map(|id| self.number(id, "id")).collect()
    }

    pub(super) async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let args = [
            lease.id.to_string(),
            lease.token.to_string(),
            now_ms().to_string(),
            outcome(failure).to_string(),
            failure.reason.clone(),
            self.encode(&failure.reason)?,
            retry_at.map_or(String::new(), |t| to_epoch_ms(t).to_string()),
        ];
        let changed: i64 = self.eval(&SCRIPTS.fail, &args, false).await?;
        Ok(changed == 1)
    }

    pub(super) async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let args = [
            lease.id.to_string(),
            lease.token.to_string(),
            now_ms().to_string(),
            self.encode(reason)?,
        ];
        let changed: i64 = self.eval(&SCRIPTS.release, &args, false).await?;
        Ok(changed == 1)
    }

    pub(super) async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        let rows: Vec<Value> = self
            .eval(&SCRIPTS.owned_by, &[owner.to_string()], true)
            .await?;
        self.tasks(&rows)
    }

    pub(super) async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        let rows: Vec<Value> = self
            .eval(&SCRIPTS.expired, &[to_epoch_ms(now).to_string()], true)
            .await?;
        self.tasks(&rows)
    }

    pub(super) async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        let mut args = vec![add_ms(now_ms(), lease).to_string()];
        let distinct: std::collections::BTreeSet<&String> = owners.iter().collect();
        args.extend(distinct.into_iter().cloned());
        self.eval(&SCRIPTS.renew, &args, false).await
    }
}
