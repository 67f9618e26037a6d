//! A task's life on the queue: submit, claim, complete (alone or with the next claim), fail,
//! release — every settlement fenced by the lease token — and the lease bookkeeping the
//! master does: `owned_by`, `expired`, `renew`.

use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::SqliteTransport;
use super::connection::immediate;
use super::rows::{encode, task_from_row, token};
use crate::task::{add_ms, now_ms, to_epoch_ms};
use crate::{
    Failure, FailureKind, Lease, Payload, Result, Submit, SubmitOptions, Task, TaskId, TaskState,
    validate_queue_name,
};

const INSERT_TASK: &str = include_str!("sql/queries/insert_task.sql");
const INSERT_IDEMPOTENCY_KEY: &str = include_str!("sql/queries/insert_idempotency_key.sql");
const CLAIM: &str = include_str!("sql/queries/claim.sql");
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
            let deleted = tx
                .prepare_cached(COMPLETE)?
                .execute(params![lease.id, token(lease)])?;
            if deleted == 0 {
                return Ok(false);
            }
            for submit in submits {
                insert_task(&tx, &submit.queue, &submit.payload, now, now)?;
            }
            tx.commit()?;
            Ok(true)
        })?;
        if done && !submits.is_empty() {
            self.wake_up();
        }
        Ok(done)
    }

    /// One IMMEDIATE transaction: delete the finished task (if its lease is current), insert
    /// its follow-ups, lease the next task.
    pub(super) fn complete_and_claim(
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
        let now = now_ms();
        let (done, next) = self.with(|conn| {
            immediate(conn, |tx| {
                let deleted = tx
                    .prepare_cached(COMPLETE)?
                    .execute(params![lease.id, token(lease)])?;
                if deleted > 0 {
                    for submit in submits {
                        insert_task(tx, &submit.queue, &submit.payload, now, now)?;
                    }
                }
                let next = claim_next(tx, queue, owner, add_ms(now, lease_for), now)?;
                Ok((deleted > 0, next))
            })
        })?;
        if done && !submits.is_empty() {
            self.wake_up();
        }
        Ok((done, next))
    }

    pub(super) fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let now = now_ms();
        let (outcome, errors, crashes) = match failure.kind {
            FailureKind::Error => ("error", 1, 0),
            FailureKind::Crash => ("crash", 0, 1),
        };
        let (state, run_at) = match retry_at {
            Some(t) => (TaskState::Pending, Some(to_epoch_ms(t))),
            None => (TaskState::Failed, None),
        };
        // `attempts` and `owner` on the right-hand side are the values before this update.
        let changed = self.with(|conn| {
            conn.prepare_cached(FAIL)?.execute(params![
                state.as_str(),
                run_at,
                errors,
                crashes,
                failure.reason,
                outcome,
                now,
                lease.id,
                token(lease)
            ])
        })? == 1;
        if changed && retry_at.is_some() {
            self.wake_up();
        }
        Ok(changed)
    }

    pub(super) fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let now = now_ms();
        let changed = self.with(|conn| {
            conn.prepare_cached(RELEASE)?
                .execute(params![now, reason, lease.id, token(lease)])
        })? == 1;
        if changed {
            self.wake_up();
        }
        Ok(changed)
    }

    pub(super) fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        self.with(|conn| {
            conn.prepare_cached(OWNED_BY)?
                .query_map(params![owner], task_from_row)?
                .collect()
        })
    }

    pub(super) fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        self.with(|conn| {
            conn.prepare_cached(EXPIRED)?
                .query_map(params![to_epoch_ms(now)], task_from_row)?
                .collect()
        })
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
