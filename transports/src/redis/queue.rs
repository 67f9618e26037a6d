//! Producers and consumers: submit, claim, settle (complete, fail, release) and the lease
//! bookkeeping of the worker and its supervisor (`owned_by`, `expired`, `renew`). Each is one
//! script (`complete_and_claim` too), so a state change happens at once or not at all.

use std::time::{Duration, SystemTime};

use ::redis::Value;

use super::RedisTransport;
use super::scripts::SCRIPTS;
use crate::task::{add_ms, now_ms, to_epoch_ms};
use crate::{
    Failure, FailureKind, Lease, Payload, Result, Submit, SubmitOptions, Task, TaskId,
    validate_queue_name,
};

/// Where the lease-token counter starts when it is missing (see the module docs).
fn token_seed(now: i64) -> String {
    now.saturating_mul(1000).to_string()
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

    pub(super) async fn claim(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let args = [
            queue.to_string(),
            owner.to_string(),
            add_ms(now, lease).to_string(),
            now.to_string(),
            token_seed(now),
        ];
        let row: Value = self.eval(&SCRIPTS.claim, &args, false).await?;
        self.claimed(&row)
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

    /// Both in one script, so one round trip per task in a busy consumer.
    pub(super) async fn complete_and_claim(
        &self,
        lease: &Lease,
        submits: &[Submit],
        queue: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<(bool, Option<Task>)> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let mut args = vec![
            lease.id.to_string(),
            lease.token.to_string(),
            now.to_string(),
            queue.to_string(),
            owner.to_string(),
            add_ms(now, lease_for).to_string(),
            token_seed(now),
        ];
        self.push_submits(&mut args, submits)?;
        let reply: Vec<Value> = self.eval(&SCRIPTS.complete_and_claim, &args, false).await?;
        match reply.as_slice() {
            [done, next] => Ok((self.field::<i64>(done, "done")? == 1, self.claimed(next)?)),
            [done] => Ok((self.field::<i64>(done, "done")? == 1, None)),
            _ => Err(self.corrupt(format_args!(
                "complete_and_claim returned {} values",
                reply.len()
            ))),
        }
    }

    pub(super) async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let outcome = match failure.kind {
            FailureKind::Error => "error",
            FailureKind::Crash => "crash",
        };
        let args = [
            lease.id.to_string(),
            lease.token.to_string(),
            now_ms().to_string(),
            outcome.to_string(),
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
