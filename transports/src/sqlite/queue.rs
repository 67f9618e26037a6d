//! A task's life on the queue: submit (one or a batch), claim (one or a batch), complete, fail,
//! release — alone or a batch of them with the next claim in one transaction, every
//! settlement fenced by its lease token — and the lease bookkeeping the master does:
//! `owned_by`, `expired`, `renew`.

use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::SqliteTransport;
use super::connection::immediate;
use super::rows::{encode, task_from_row, token};
use crate::batch::validate_submits;
use crate::task::{add_ms, now_ms, to_epoch_ms};
use crate::{
    Failure, FailureKind, Lease, Payload, Result, Settlement, Submit, SubmitOptions, Task, TaskId,
    TaskState, validate_queue_name,
};

const INSERT_TASK: &str = include_str!("sql/queries/insert_task.sql");
const INSERT_IDEMPOTENCY_KEY: &str = include_str!("sql/queries/insert_idempotency_key.sql");
const CLAIM: &str = include_str!("sql/queries/claim.sql");
const CLAIM_BATCH: &str = include_str!("sql/queries/claim_batch.sql");
const COMPLETE: &str = include_str!("sql/queries/complete.sql");
const FAIL: &str = include_str!("sql/queries/fail.sql");
const RELEASE: &str = include_str!("sql/queries/release.sql");
const OWNED_BY: &str = include_str!("sql/queries/owned_by.sql");
const EXPIRED: &str = include_str!("sql/queries/expired.sql");
const RENEW: &str = include_str!("sql/queries/renew.sql");

/// Lease the earliest due ready task of `queue`, then the lowest id (one entry of the
/// `tasks_claim_order` index): one statement, so the choice of task and its lease are atomic across
/// processes.
///
/// `CAST(? AS TEXT)`: the bundled SQLite has STAT4, which re-prepares a statement after every
/// new binding of a parameter compared with an indexed column (measured: every claim, a fifth
/// of the worker's time). Comparing with an expression keeps the index and the prepared plan.
fn claim_next(
    conn: &Connection,
    queue: &str,
    owner: &str,
    lease_until: i64,
    now: i64,
) -> rusqlite::Result<Option<Task>> {
    conn.prepare_cached(CLAIM)?
        .query_row(params![owner, lease_until, queue, now], task_from_row)
        .optional()
}

fn insert_task(
    conn: &Connection,
    queue: &str,
    payload: &Payload,
    run_at: i64,
    now: i64,
) -> rusqlite::Result<TaskId> {
    conn.prepare_cached(INSERT_TASK)?
        .execute(params![queue, encode(payload)?, run_at, now])?;
    Ok(conn.last_insert_rowid())
}

/// Lease up to `max` due tasks of `queue`, returned in claim order (one statement; SQLite's
/// `RETURNING` order is unspecified, so the rows carry their `run_at` to be sorted by). The
/// window is bound as `CAST(? AS INTEGER)` for the reason given at [`claim_next`]: a bare
/// `LIMIT ?` re-prepared the statement on every call (a tenth of the child's time).
fn claim_many(
    conn: &Connection,
    queue: &str,
    owner: &str,
    lease_until: i64,
    now: i64,
    max: usize,
) -> rusqlite::Result<Vec<Task>> {
    if max <= 1 {
        return Ok(claim_next(conn, queue, owner, lease_until, now)?
            .into_iter()
            .collect());
    }
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let mut rows = conn
        .prepare_cached(CLAIM_BATCH)?
        .query_map(params![owner, lease_until, queue, now, limit], |row| {
            Ok((row.get::<_, i64>(10)?, task_from_row(row)?))
        })?
        .collect::<rusqlite::Result<Vec<(i64, Task)>>>()?;
    rows.sort_unstable_by_key(|(run_at, task)| (*run_at, task.id));
    Ok(rows.into_iter().map(|(_, task)| task).collect())
}

/// Apply one settlement inside the caller's transaction; `false` when its lease is stale.
fn settle_one(conn: &Connection, settlement: &Settlement, now: i64) -> rusqlite::Result<bool> {
    match settlement {
        Settlement::Complete {
            lease,
            submits,
            result,
        } => complete_one(conn, lease, submits, result.as_ref(), now),
        Settlement::Fail {
            lease,
            failure,
            retry_at,
        } => fail_one(conn, lease, failure, *retry_at, now),
        Settlement::Release { lease, reason } => release_one(conn, lease, reason, now),
    }
}

/// Keep the task as done, with its result, and enqueue its follow-ups; `false` when stale.
fn complete_one(
    conn: &Connection,
    lease: &Lease,
    submits: &[Submit],
    result: Option<&serde_json::Value>,
    now: i64,
) -> rusqlite::Result<bool> {
    let result = result
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let done =
        conn.prepare_cached(COMPLETE)?
            .execute(params![lease.id, token(lease), now, result])?;
    if done == 0 {
        return Ok(false);
    }
    for submit in submits {
        insert_task(conn, &submit.queue, &submit.payload, now, now)?;
    }
    Ok(true)
}

/// Whether an applied settlement made a task ready for consumers to wake up for.
fn readies(settlement: &Settlement) -> bool {
    match settlement {
        Settlement::Complete { submits, .. } => !submits.is_empty(),
        Settlement::Fail { retry_at, .. } => retry_at.is_some(),
        Settlement::Release { .. } => true,
    }
}

fn fail_one(
    conn: &Connection,
    lease: &Lease,
    failure: &Failure,
    retry_at: Option<SystemTime>,
    now: i64,
) -> rusqlite::Result<bool> {
    let (outcome, errors, crashes) = match failure.kind {
        FailureKind::Error => ("error", 1, 0),
        FailureKind::Crash => ("crash", 0, 1),
        FailureKind::Cancelled => ("cancelled", 0, 0),
    };
    let (state, run_at) = match retry_at {
        Some(t) => (TaskState::Pending, Some(to_epoch_ms(t))),
        None => (TaskState::Failed, None),
    };
    // `attempts` and `owner` on the right-hand side are the values before this update.
    let changed = conn.prepare_cached(FAIL)?.execute(params![
        state.as_str(),
        run_at,
        errors,
        crashes,
        failure.reason,
        outcome,
        now,
        lease.id,
        token(lease)
    ])?;
    Ok(changed == 1)
}

fn release_one(conn: &Connection, lease: &Lease, reason: &str, now: i64) -> rusqlite::Result<bool> {
    let changed =
        conn.prepare_cached(RELEASE)?
            .execute(params![now, reason, lease.id, token(lease)])?;
    Ok(changed == 1)
}

impl SqliteTransport {
    pub(super) fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let run_at = opts.run_at.map_or(now, to_epoch_ms);
        let id = self.with(|conn| {
            let Some(key) = &opts.idempotency_key else {
                return insert_task(conn, queue, &payload, run_at, now).map(Some);
            };
            // Key and task commit together: neither a key without its task nor a duplicate.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = insert_task(&tx, queue, &payload, run_at, now)?;
            let fresh = tx
                .prepare_cached(INSERT_IDEMPOTENCY_KEY)?
                .execute(params![key, id, now])?
                == 1;
            if !fresh {
                return Ok(None); // dropping `tx` rolls the task back
            }
            tx.commit()?;
            Ok(Some(id))
        })?;
        if id.is_some() {
            self.wake_up();
        }
        Ok(id)
    }

    pub(super) fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        self.with(|conn| claim_next(conn, queue, owner, add_ms(now, lease), now))
    }

    pub(super) fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        let now = now_ms();
        let done = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !complete_one(&tx, lease, submits, None, now)? {
                return Ok(false);
            }
            tx.commit()?;
            Ok(true)
        })?;
        if done && !submits.is_empty() {
            self.wake_up();
        }
        Ok(done)
    }

    /// Up to `max` tasks in claim order: one statement (one transaction).
    pub(super) fn claim_batch(
        &self,
        queue: &str,
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        self.with(|conn| claim_many(conn, queue, owner, add_ms(now, lease), now, max))
    }

    /// One IMMEDIATE transaction: apply every settlement of `batch` (each fenced by its own
    /// token; a completion's submits only when it applies), then lease up to `max` next tasks.
    pub(super) fn settle_and_claim(
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
        let mut readied = false;
        let (applied, next) = self.with(|conn| {
            immediate(conn, |tx| {
                let mut applied = Vec::with_capacity(batch.len());
                for settlement in batch {
                    let done = settle_one(tx, settlement, now)?;
                    readied |= done && readies(settlement);
                    applied.push(done);
                }
                let next = if max == 0 {
                    Vec::new()
                } else {
                    claim_many(tx, queue, owner, add_ms(now, lease_for), now, max)?
                };
                Ok((applied, next))
            })
        })?;
        if readied {
            self.wake_up();
        }
        Ok((applied, next))
    }

    /// Every settlement of `batch` in one IMMEDIATE transaction.
    pub(super) fn settle(&self, batch: &[Settlement]) -> Result<Vec<bool>> {
        validate_submits(batch)?;
        let now = now_ms();
        let mut readied = false;
        let applied = self.with(|conn| {
            immediate(conn, |tx| {
                batch
                    .iter()
                    .map(|settlement| {
                        let done = settle_one(tx, settlement, now)?;
                        readied |= done && readies(settlement);
                        Ok(done)
                    })
                    .collect::<rusqlite::Result<Vec<bool>>>()
            })
        })?;
        if readied {
            self.wake_up();
        }
        Ok(applied)
    }

    /// All of `tasks` in one IMMEDIATE transaction.
    pub(super) fn submit_batch(
        &self,
        tasks: &[Submit],
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        for task in tasks {
            validate_queue_name(&task.queue)?;
        }
        let now = now_ms();
        let run_at = run_at.map_or(now, to_epoch_ms);
        let ids = self.with(|conn| {
            immediate(conn, |tx| {
                tasks
                    .iter()
                    .map(|task| insert_task(tx, &task.queue, &task.payload, run_at, now))
                    .collect::<rusqlite::Result<Vec<TaskId>>>()
            })
        })?;
        if !ids.is_empty() {
            self.wake_up();
        }
        Ok(ids)
    }

    pub(super) fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let now = now_ms();
        let changed = self.with(|conn| fail_one(conn, lease, failure, retry_at, now))?;
        if changed && retry_at.is_some() {
            self.wake_up();
        }
        Ok(changed)
    }

    pub(super) fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let now = now_ms();
        let changed = self.with(|conn| release_one(conn, lease, reason, now))?;
        if changed {
            self.wake_up();
        }
        Ok(changed)
    }

    /// Sorted here, not in SQL: an `ORDER BY id` makes SQLite prefer a scan in rowid order of
    /// the whole table to the partial index of running tasks.
    pub(super) fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        let mut tasks: Vec<Task> = self.with(|conn| {
            conn.prepare_cached(OWNED_BY)?
                .query_map(params![owner], task_from_row)?
                .collect()
        })?;
        tasks.sort_unstable_by_key(|task| task.id);
        Ok(tasks)
    }

    pub(super) fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        let mut tasks: Vec<Task> = self.with(|conn| {
            conn.prepare_cached(EXPIRED)?
                .query_map(params![to_epoch_ms(now)], task_from_row)?
                .collect()
        })?;
        tasks.sort_unstable_by_key(|task| task.id);
        Ok(tasks)
    }

    pub(super) fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        let until = add_ms(now_ms(), lease);
        // The owners travel as one JSON array so that any number of them is one cached statement.
        let owners = serde_json::Value::from(owners).to_string();
        let renewed =
            self.with(|conn| conn.prepare_cached(RENEW)?.execute(params![until, owners]))?;
        Ok(renewed as u64)
    }
}
