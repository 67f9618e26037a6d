//! The consumers' side of the queue: submit, claim, and settling a lease (complete,
//! complete_and_claim, fail, release), plus what a master asks about leases (owned_by,
//! expired, renew). Settlements are fenced by `lease_token`, so a stale lease matches no row.

use std::time::{Duration, SystemTime};

use tokio_postgres::types::ToSql;

use super::PgsqlTransport;
use super::rows::{add, clamp_time, encode, now, task_from_row, text, token};
use crate::task::to_epoch_ms;
use crate::{
    Failure, FailureKind, Lease, Payload, Result, Submit, SubmitOptions, Task, TaskId,
    validate_queue_name,
};

impl PgsqlTransport {
    pub(super) async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        self.run(async {
            let now = now();
            let run_at = clamp_time(opts.run_at.unwrap_or(now));
            let payload = encode(&payload)?;
            let client = self.client().await?;
            let row = match &opts.idempotency_key {
                None => {
                    let stmt = client.prepare_cached(&self.sql.submit).await?;
                    client
                        .query_opt(&stmt, &[&queue, &payload, &run_at, &now, &self.channel])
                        .await?
                }
                Some(key) => {
                    let stmt = client.prepare_cached(&self.sql.submit_keyed).await?;
                    let key = text(key);
                    client
                        .query_opt(
                            &stmt,
                            &[&queue, &payload, &run_at, &now, &self.channel, &key],
                        )
                        .await?
                }
            };
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
        .await
    }

    pub(super) async fn claim(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        self.run(async {
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.claim).await?;
            let row = client
                .query_opt(&stmt, &[&owner, &add(now, lease), &queue, &now])
                .await?;
            row.as_ref().map(task_from_row).transpose()
        })
        .await
    }

    pub(super) async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        self.run(async {
            let mut client = self.client().await?;
            if submits.is_empty() {
                let stmt = client.prepare_cached(&self.sql.complete).await?;
                return Ok(client.execute(&stmt, &[&lease.id, &token(lease)]).await? == 1);
            }
            let queues: Vec<&str> = submits.iter().map(|s| s.queue.as_str()).collect();
            let payloads = submits
                .iter()
                .map(|s| encode(&s.payload))
                .collect::<Result<Vec<_>, _>>()?;
            // Dropping `tx` without committing rolls back: a stale lease submits nothing.
            let tx = client.transaction().await?;
            let stmt = tx.prepare_cached(&self.sql.complete).await?;
            if tx.execute(&stmt, &[&lease.id, &token(lease)]).await? == 0 {
                return Ok(false);
            }
            let stmt = tx.prepare_cached(&self.sql.complete_submits).await?;
            tx.execute(&stmt, &[&queues, &payloads, &now(), &self.channel])
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// See the trait implementation's doc (in `mod.rs`): without submits one statement that
    /// commits with `synchronous_commit = off`, with submits one durable transaction.
    pub(super) async fn complete_and_claim(
        &self,
        lease: &Lease,
        submits: &[Submit],
        queue: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<(bool, Option<Task>)> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        validate_queue_name(queue)?;
        self.run(async {
            let mut client = self.client().await?;
            if submits.is_empty() {
                let now = now();
                let stmt = client.prepare_cached(&self.sql.complete_and_claim).await?;
                let params: [&(dyn ToSql + Sync); 6] = [
                    &owner,
                    &add(now, lease_for),
                    &queue,
                    &now,
                    &lease.id,
                    &token(lease),
                ];
                let row = client.query_one(&stmt, &params).await?;
                let done: i64 = row.try_get(row.len() - 2)?;
                let claimed: Option<i64> = row.try_get(0)?;
                let next = match claimed {
                    Some(_) => Some(task_from_row(&row)?),
                    None => None,
                };
                return Ok((done == 1, next));
            }
            let tx = client.transaction().await?;
            let stmt = tx.prepare_cached(&self.sql.complete).await?;
            let done = tx.execute(&stmt, &[&lease.id, &token(lease)]).await? == 1;
            if done && !submits.is_empty() {
                let queues: Vec<&str> = submits.iter().map(|s| s.queue.as_str()).collect();
                let payloads = submits
                    .iter()
                    .map(|s| encode(&s.payload))
                    .collect::<Result<Vec<_>, _>>()?;
                let stmt = tx.prepare_cached(&self.sql.complete_submits).await?;
                tx.execute(&stmt, &[&queues, &payloads, &now(), &self.channel])
                    .await?;
            }
            let now = now();
            let stmt = tx.prepare_cached(&self.sql.claim).await?;
            let row = tx
                .query_opt(&stmt, &[&owner, &add(now, lease_for), &queue, &now])
                .await?;
            let next = row.as_ref().map(task_from_row).transpose()?;
            tx.commit().await?;
            Ok((done, next))
        })
        .await
    }

    pub(super) async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let (outcome, errors, crashes) = match failure.kind {
            FailureKind::Error => ("error", 1i32, 0i32),
            FailureKind::Crash => ("crash", 0, 1),
        };
        let reason = text(&failure.reason);
        self.run(async {
            let finished_at = to_epoch_ms(now());
            let token = token(lease);
            let client = self.client().await?;
            let changed = match retry_at.map(clamp_time) {
                Some(retry_at) => {
                    let stmt = client.prepare_cached(&self.sql.fail_retry).await?;
                    let params: [&(dyn ToSql + Sync); 9] = [
                        &retry_at,
                        &errors,
                        &crashes,
                        &reason,
                        &outcome,
                        &finished_at,
                        &lease.id,
                        &token,
                        &self.channel,
                    ];
                    client.query(&stmt, &params).await?.len()
                }
                None => {
                    let stmt = client.prepare_cached(&self.sql.fail_final).await?;
                    let params: [&(dyn ToSql + Sync); 8] = [
                        &None::<SystemTime>,
                        &errors,
                        &crashes,
                        &reason,
                        &outcome,
                        &finished_at,
                        &lease.id,
                        &token,
                    ];
                    client.execute(&stmt, &params).await? as usize
                }
            };
            Ok(changed == 1)
        })
        .await
    }

    pub(super) async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let reason = text(reason);
        self.run(async {
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.release).await?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &now,
                        &reason,
                        &to_epoch_ms(now),
                        &lease.id,
                        &token(lease),
                        &self.channel,
                    ],
                )
                .await?;
            Ok(rows.len() == 1)
        })
        .await
    }

    pub(super) async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.owned_by).await?;
            let rows = client.query(&stmt, &[&owner]).await?;
            rows.iter().map(task_from_row).collect()
        })
        .await
    }

    pub(super) async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.expired).await?;
            let rows = client.query(&stmt, &[&clamp_time(now)]).await?;
            rows.iter().map(task_from_row).collect()
        })
        .await
    }

    pub(super) async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        if owners.is_empty() {
            return Ok(0);
        }
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.renew).await?;
            Ok(client
                .execute(&stmt, &[&add(now(), lease), &owners])
                .await?)
        })
        .await
    }
}
