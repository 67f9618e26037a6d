//! The consumers' side of the queue: submit (one or a batch), claim (one or a batch), and
//! settling leases (complete, fail, release, or a batch of them, alone or with the next
//! claim), plus what a master asks about leases (owned_by, expired, renew). Settlements are
//! fenced by `lease_token`, so a stale lease matches no row.
//!
//! Every batch operation is one statement (one round trip, its own transaction), its
//! arrays bound as parameters:
//!
//! * `submit_batch` — one `INSERT ... SELECT FROM unnest(...) WITH ORDINALITY` in the given
//!   order, with one notification per queue.
//! * `claim_batch` — one `UPDATE ... WHERE id = ANY(ARRAY(SELECT ... LIMIT n FOR UPDATE
//!   SKIP LOCKED))`; the rows carry their `run_at` to be sorted into claim order.
//! * `settle_and_claim` of completions without submits — `complete_batch_and_claim`: the
//!   deletions and the claim, committed without waiting for the WAL flush (see the trait
//!   implementation's doc in `mod.rs`); with one completion and a window of one, the older
//!   `complete_and_claim` (one row back; the batch statement measured no faster there).
//! * `settle`, and `settle_and_claim` of anything else — `settle_and_claim`: deletions,
//!   follow-up submits of the applied completions only, failures, releases, notifications
//!   and the claim (a window of 0 for `settle`), one durable commit.
//!
//! A statement sees the table as it was when it started: the tasks a batch submits, retries
//! now or releases are not among those it claims (the next claim finds them). Two
//! settlements of one task in a batch cannot be one statement (a row changes once per
//! statement): such a batch is settled one settlement at a time, in order.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PgsqlTransport;
use super::claim_from::{HEAD, Position};
use super::connection::Fail;
use super::rows::{add, clamp_time, encode, now, task_from_row, text, token};
use crate::batch::validate_submits;
use crate::task::to_epoch_ms;
use crate::{
    Failure, FailureKind, Lease, Payload, Result, Settlement, Submit, SubmitOptions, Task, TaskId,
    validate_queue_name,
};

/// A window as a `LIMIT`.
fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

/// Claimed tasks (rows of `claim_batch`, or the task rows of a settle-and-claim statement),
/// with their `run_at` after the task columns, in claim order: `RETURNING` has no order.
fn in_claim_order<'a>(rows: impl Iterator<Item = &'a Row>) -> Result<Vec<Task>, Fail> {
    let mut tasks = rows
        .map(|row| Ok((row.try_get::<_, SystemTime>(10)?, task_from_row(row)?)))
        .collect::<Result<Vec<(SystemTime, Task)>, Fail>>()?;
    tasks.sort_unstable_by_key(|(run_at, task)| (*run_at, task.id));
    Ok(tasks.into_iter().map(|(_, task)| task).collect())
}

/// The last of the claimed tasks among `rows` in claim order (rows with a queue are claimed).
fn last_claimed<'a>(rows: impl Iterator<Item = &'a Row>) -> Option<Position> {
    rows.filter(|row| row.try_get::<_, Option<&str>>(1).is_ok_and(|q| q.is_some()))
        .filter_map(|row| Some((row.try_get(10).ok()?, row.try_get(0).ok()?)))
        .max()
}

/// What a settle-and-claim statement returns, told apart by its first two columns: a claimed
/// task (its queue set), the id of an applied settlement (only the id), or the row of a side
/// effect (all NULL). The applied settlements of `batch` in order, and the claimed tasks —
/// which fail to decode without failing the call, like any claim part of a settle-and-claim.
fn settled_and_claimed(batch: &[Settlement], rows: &[Row]) -> Result<(Vec<bool>, Vec<Task>), Fail> {
    let mut applied = HashSet::new();
    let mut claimed = Vec::new();
    for row in rows {
        match (
            row.try_get::<_, Option<TaskId>>(0)?,
            row.try_get::<_, Option<&str>>(1)?,
        ) {
            (Some(_), Some(_)) => claimed.push(row),
            (Some(id), None) => {
                applied.insert(id);
            }
            (None, _) => {}
        }
    }
    let applied = batch
        .iter()
        .map(|settlement| applied.contains(&settlement.lease().id))
        .collect();
    Ok((
        applied,
        in_claim_order(claimed.into_iter()).unwrap_or_default(),
    ))
}

/// Whether no task is settled twice in `batch` (then it can be one statement).
fn distinct_tasks(batch: &[Settlement]) -> bool {
    let mut seen = HashSet::with_capacity(batch.len());
    batch
        .iter()
        .all(|settlement| seen.insert(settlement.lease().id))
}

/// The parameters of the `settle_and_claim` statement besides the claim's: one set of arrays
/// per kind of settlement (`$6`..`$18`).
#[derive(Default)]
struct Arrays<'a> {
    done_ids: Vec<TaskId>,
    done_tokens: Vec<i64>,
    /// Each completion's result as JSON text (NULL for none).
    done_results: Vec<Option<String>>,
    /// Each follow-up submit with the task whose completion carries it.
    submit_tasks: Vec<TaskId>,
    submit_queues: Vec<&'a str>,
    submit_payloads: Vec<String>,
    fail_ids: Vec<TaskId>,
    fail_tokens: Vec<i64>,
    fail_retry_at: Vec<Option<SystemTime>>,
    fail_outcomes: Vec<&'static str>,
    fail_reasons: Vec<std::borrow::Cow<'a, str>>,
    release_ids: Vec<TaskId>,
    release_tokens: Vec<i64>,
    release_reasons: Vec<std::borrow::Cow<'a, str>>,
}

impl<'a> Arrays<'a> {
    fn new(batch: &'a [Settlement]) -> Result<Self, Fail> {
        let mut a = Arrays::default();
        for settlement in batch {
            match settlement {
                Settlement::Complete {
                    lease,
                    submits,
                    result,
                } => {
                    a.done_ids.push(lease.id);
                    a.done_tokens.push(token(lease));
                    a.done_results.push(
                        result
                            .as_ref()
                            .map(serde_json::to_string)
                            .transpose()
                            .map_err(|e| Fail::Data(format!("cannot encode a result: {e}")))?,
                    );
                    for submit in submits {
                        a.submit_tasks.push(lease.id);
                        a.submit_queues.push(&submit.queue);
                        a.submit_payloads.push(encode(&submit.payload)?);
                    }
                }
                Settlement::Fail {
                    lease,
                    failure,
                    retry_at,
                } => {
                    a.fail_ids.push(lease.id);
                    a.fail_tokens.push(token(lease));
                    a.fail_retry_at.push(retry_at.map(clamp_time));
                    a.fail_outcomes.push(outcome(failure));
                    a.fail_reasons.push(text(&failure.reason));
                }
                Settlement::Release { lease, reason } => {
                    a.release_ids.push(lease.id);
                    a.release_tokens.push(token(lease));
                    a.release_reasons.push(text(reason));
                }
            }
        }
        Ok(a)
    }
}

/// The history's name of a failure's kind (`fail_retry`, `fail_final` and `settle_and_claim`
/// count an `error` in `errors`, a `crash` in `crashes`).
fn outcome(failure: &Failure) -> &'static str {
    match failure.kind {
        FailureKind::Error => "error",
        FailureKind::Crash => "crash",
        FailureKind::Cancelled => "cancelled",
    }
}

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
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        self.run(async {
            let mut client = self.client().await?;
            let (now, no_result) = (now(), None::<String>);
            let params: [&(dyn ToSql + Sync); 4] = [&lease.id, &token(lease), &now, &no_result];
            if submits.is_empty() {
                let stmt = client.prepare_cached(&self.sql.complete).await?;
                return Ok(client.execute(&stmt, &params).await? == 1);
            }
            let queues: Vec<&str> = submits.iter().map(|s| s.queue.as_str()).collect();
            let payloads = submits
                .iter()
                .map(|s| encode(&s.payload))
                .collect::<Result<Vec<_>, _>>()?;
            // Dropping `tx` without committing rolls back: a stale lease submits nothing.
            let tx = client.transaction().await?;
            let stmt = tx.prepare_cached(&self.sql.complete).await?;
            if tx.execute(&stmt, &params).await? == 0 {
                return Ok(false);
            }
            let stmt = tx.prepare_cached(&self.sql.complete_submits).await?;
            tx.execute(&stmt, &[&queues, &payloads, &now, &self.channel])
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Up to `max` (at least one) due tasks in claim order: one statement.
    pub(super) async fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        validate_queue_name(queue)?;
        self.run(async {
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.claim_batch).await?;
            let from = self.claim_from.next(queue);
            let params: [&(dyn ToSql + Sync); 7] = [
                &owner,
                &add(now, lease),
                &queue,
                &now,
                &limit(max.max(1)),
                &from.unwrap_or(HEAD).0,
                &from.unwrap_or(HEAD).1,
            ];
            let rows = client.query(&stmt, &params).await?;
            let tasks = in_claim_order(rows.iter())?;
            let last = last_claimed(rows.iter());
            self.claim_from
                .claimed(queue, from, max.max(1), tasks.len(), last);
            Ok(tasks)
        })
        .await
    }

    /// Every settlement of `batch` in one statement (one durable transaction): the
    /// `settle_and_claim` statement with a window of 0.
    pub(super) async fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        validate_submits(batch)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if !distinct_tasks(batch) {
            return crate::batch::settle_each(self, batch).await;
        }
        let (applied, _) = self
            .settle_and_claim_all(batch, "", "", Duration::ZERO, 0)
            .await?;
        Ok(applied)
    }

    /// See the trait implementation's doc (in `mod.rs`): completions without submits are the
    /// `complete_batch_and_claim` statement (`complete_and_claim` for one completion and a
    /// window of one), committed without waiting for the WAL flush; any other
    /// batch is the `settle_and_claim` statement, committed durably. Either way one statement,
    /// so a claim fails only with the whole statement; claimed rows that do not decode are
    /// dropped (their leases expire) rather than failing the call.
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
        if batch.is_empty() && max == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        if !distinct_tasks(batch) {
            return crate::batch::settle_then_claim(self, batch, queue, owner, lease_for, max)
                .await;
        }
        let acks_only = batch.iter().all(|settlement| {
            matches!(settlement,
                Settlement::Complete { submits, result: None, .. } if submits.is_empty())
        });
        if !acks_only {
            return self
                .settle_and_claim_all(batch, queue, owner, lease_for, max)
                .await;
        }
        self.run(async {
            let now = now();
            let client = self.client().await?;
            if let ([settlement], 1) = (batch, max) {
                // A window of one: the single statement (one row back).
                let lease = settlement.lease();
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
                let next = match row.try_get::<_, Option<TaskId>>(0)? {
                    Some(_) => task_from_row(&row).ok(),
                    None => None,
                };
                return Ok((vec![done == 1], next.into_iter().collect()));
            }
            let ids: Vec<TaskId> = batch.iter().map(|s| s.lease().id).collect();
            let tokens: Vec<i64> = batch.iter().map(|s| token(s.lease())).collect();
            let stmt = client
                .prepare_cached(&self.sql.complete_batch_and_claim)
                .await?;
            let from = self.claim_from.next(queue);
            let params: [&(dyn ToSql + Sync); 9] = [
                &owner,
                &add(now, lease_for),
                &queue,
                &now,
                &ids,
                &tokens,
                &limit(max),
                &from.unwrap_or(HEAD).0,
                &from.unwrap_or(HEAD).1,
            ];
            let rows = client.query(&stmt, &params).await?;
            let settled = settled_and_claimed(batch, &rows)?;
            let last = last_claimed(rows.iter());
            self.claim_from
                .claimed(queue, from, max, settled.1.len(), last);
            Ok(settled)
        })
        .await
    }

    /// The `settle_and_claim` statement: `batch` (of distinct tasks, its submits validated)
    /// and a claim of up to `max` tasks.
    async fn settle_and_claim_all(
        &self,
        batch: &[Settlement],
        queue: &str,
        owner: &str,
        lease_for: Duration,
        max: usize,
    ) -> Result<(Vec<bool>, Vec<Task>)> {
        self.run(async {
            let a = Arrays::new(batch)?;
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.settle_and_claim).await?;
            let from = self.claim_from.next(queue);
            let params: [&(dyn ToSql + Sync); 23] = [
                &owner,
                &add(now, lease_for),
                &queue,
                &now,
                &limit(max),
                &a.done_ids,
                &a.done_tokens,
                &a.submit_tasks,
                &a.submit_queues,
                &a.submit_payloads,
                &a.fail_ids,
                &a.fail_tokens,
                &a.fail_retry_at,
                &a.fail_outcomes,
                &a.fail_reasons,
                &a.release_ids,
                &a.release_tokens,
                &a.release_reasons,
                &to_epoch_ms(now),
                &self.channel,
                &a.done_results,
                &from.unwrap_or(HEAD).0,
                &from.unwrap_or(HEAD).1,
            ];
            let rows = client.query(&stmt, &params).await?;
            let settled = settled_and_claimed(batch, &rows)?;
            let last = last_claimed(rows.iter());
            self.claim_from
                .claimed(queue, from, max, settled.1.len(), last);
            if !a.release_ids.is_empty() {
                // Released tasks go back to their place, behind where the claim ended.
                self.claim_from.released();
            }
            Ok(settled)
        })
        .await
    }

    /// All of `tasks` in one statement, ids in the order given.
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
        self.run(async {
            let now = now();
            let run_at = clamp_time(run_at.unwrap_or(now));
            let queues: Vec<&str> = tasks.iter().map(|t| t.queue.as_str()).collect();
            let payloads = tasks
                .iter()
                .map(|t| encode(&t.payload))
                .collect::<Result<Vec<_>, _>>()?;
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.submit_batch).await?;
            let row = client
                .query_one(&stmt, &[&queues, &payloads, &run_at, &now, &self.channel])
                .await?;
            // Inserted in the given order, so the sequence numbered them in that order.
            let ids: Vec<TaskId> = row.try_get(0)?;
            if ids.len() != tasks.len() {
                return Err(Fail::Data(format!(
                    "submit_batch inserted {} of {} tasks",
                    ids.len(),
                    tasks.len()
                )));
            }
            Ok(ids)
        })
        .await
    }

    pub(super) async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let outcome = outcome(failure);
        let (errors, crashes) = match failure.kind {
            FailureKind::Error => (1i32, 0i32),
            FailureKind::Crash => (0, 1),
            FailureKind::Cancelled => (0, 0),
        };
        let reason = text(&failure.reason);
        self.run(async {
            let now = now();
            let finished_at = to_epoch_ms(now);
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
                        &now,
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
            if rows.len() == 1 {
                self.claim_from.released();
            }
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
