//! What the operator console asks of the database beyond the delivery path: pause flags,
//! looking a task up, filtered listings (keyset pagination by id) and counts, purging
//! selected failed tasks, cancelling tasks, and masters' heartbeats.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::SqliteTransport;
use super::connection::immediate;
use super::rows::{get_u64, summary_from_row};
use crate::console::CANCEL_REQUEST_KEPT;
use crate::console::MAX_PAGE;
use crate::task::{now_ms, to_epoch_ms};
use crate::{
    ListState, MasterRecord, Result, TaskFilter, TaskId, TaskSummary, TransportError,
    validate_queue_name,
};

const PAUSE: &str = include_str!("sql/queries/pause.sql");
const RESUME: &str = include_str!("sql/queries/resume.sql");
const PAUSED: &str = include_str!("sql/queries/paused.sql");
const TASK: &str = include_str!("sql/queries/task.sql");
const PURGE_FAILED_BY_IDS: &str = include_str!("sql/queries/purge_failed_by_ids.sql");
const BEAT: &str = include_str!("sql/queries/beat.sql");
const FORGET_MASTER: &str = include_str!("sql/queries/forget_master.sql");
const MASTERS: &str = include_str!("sql/queries/masters.sql");
const PRUNE_MASTERS: &str = include_str!("sql/queries/prune_masters.sql");
const CANCEL_PENDING: &str = include_str!("sql/queries/cancel_pending.sql");
const REQUEST_CANCEL: &str = include_str!("sql/queries/request_cancel.sql");
const PRUNE_CANCEL_REQUESTS: &str = include_str!("sql/queries/prune_cancel_requests.sql");
const CANCEL_REQUESTS: &str = include_str!("sql/queries/cancel_requests.sql");

/// The summary columns `summary_from_row` reads.
/// See [`SqliteTransport::is_crowded`].
const CROWDED: u64 = 5_000;

const SUMMARY_COLUMNS: &str = "id, queue, state, payload, attempts, errors, crashes, last_error, \
     history, created_at, run_at, owner, result, started_at";

/// A filter as SQL conditions (joined by AND) and their parameters, in order. Only the
/// conditions a filter sets are written, so that the planner can use the claim-order index
/// (queue, state, run_at, id) when a queue and a state are given.
fn conditions(filter: &TaskFilter, now: i64) -> (String, Vec<Value>) {
    let mut sql = Vec::new();
    let mut params = Vec::new();
    if let Some(queue) = &filter.queue {
        params.push(Value::Text(queue.clone()));
        sql.push(format!("queue = ?{}", params.len()));
    }
    match filter.state {
        None => sql.push("state != 'done'".to_string()),
        Some(state @ (ListState::Ready | ListState::Delayed)) => {
            params.push(Value::Integer(now));
            let op = if state == ListState::Ready { "<=" } else { ">" };
            sql.push(format!(
                "state = 'pending' AND run_at {op} ?{}",
                params.len()
            ));
        }
        Some(state) => sql.push(format!("state = '{}'", state.task_state().as_str())),
    }
    if let Some(text) = &filter.text {
        params.push(Value::Text(text.clone()));
        let n = params.len();
        let by_id = match filter.text_id() {
            Some(id) => format!(" OR id = {id}"),
            None => String::new(),
        };
        // instr: a plain substring, no LIKE wildcards to escape.
        sql.push(format!(
            "(instr(payload, ?{n}) > 0 OR instr(COALESCE(last_error, ''), ?{n}) > 0{by_id})"
        ));
    }
    for (bound, op) in [(filter.since, ">="), (filter.until, "<")] {
        if let Some(t) = bound {
            params.push(Value::Integer(to_epoch_ms(t)));
            sql.push(format!("run_at {op} ?{}", params.len()));
        }
    }
    (sql.join(" AND "), params)
}

impl SqliteTransport {
    pub(super) fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        validate_queue_name(queue)?;
        let changed = self.with(|conn| {
            if paused {
                conn.prepare_cached(PAUSE)?
                    .execute(params![queue, now_ms()])
            } else {
                conn.prepare_cached(RESUME)?.execute(params![queue])
            }
        })?;
        if changed > 0 && !paused {
            self.wake_up();
        }
        Ok(changed > 0)
    }

    pub(super) fn paused(&self) -> Result<Vec<String>> {
        self.texts(PAUSED)
    }

    /// The first column of what `sql` (no parameters) returns, as text.
    pub(super) fn texts(&self, sql: &str) -> Result<Vec<String>> {
        self.with(|conn| {
            conn.prepare_cached(sql)?
                .query_map([], |row| row.get(0))?
                .collect()
        })
    }

    pub(super) fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        let changed = self.with(|conn| {
            conn.prepare_cached(CANCEL_PENDING)?
                .execute(params![id, reason, now_ms()])
        })?;
        Ok(changed == 1)
    }

    pub(super) fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        let now = now_ms();
        let kept = i64::try_from(CANCEL_REQUEST_KEPT.as_millis()).unwrap_or(i64::MAX);
        self.with(|conn| {
            immediate(conn, |conn| {
                conn.prepare_cached(PRUNE_CANCEL_REQUESTS)?
                    .execute(params![now - kept])?;
                conn.prepare_cached(REQUEST_CANCEL)?
                    .execute(params![id, attempt, now])
            })
        })?;
        Ok(())
    }

    pub(super) fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        let kept = i64::try_from(CANCEL_REQUEST_KEPT.as_millis()).unwrap_or(i64::MAX);
        self.with(|conn| {
            conn.prepare_cached(CANCEL_REQUESTS)?
                .query_map(params![now_ms() - kept], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect()
        })
    }

    pub(super) fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        self.with(|conn| {
            conn.prepare_cached(TASK)?
                .query_row(params![id], summary_from_row)
                .optional()
        })
    }

    pub(super) fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = &filter.queue {
            validate_queue_name(queue)?;
        }
        let now = now_ms();
        let source = if self.is_crowded(filter, now)? {
            match filter.state {
                Some(ListState::Failed) => "tasks INDEXED BY tasks_failed",
                _ => "tasks NOT INDEXED",
            }
        } else {
            "tasks"
        };
        let (conditions, mut params) = conditions(filter, now);
        params.push(Value::Integer(after.unwrap_or(0)));
        let after = params.len();
        params.push(Value::Integer(limit.min(MAX_PAGE) as i64));
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM {source} WHERE {conditions} AND id > ?{after} \
             ORDER BY id LIMIT ?{}",
            after + 1
        );
        self.with(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(params_from_iter(params), summary_from_row)?
                .collect()
        })
    }

    /// Whether the claim-order index holds at least [`CROWDED`] entries of `filter`'s queue
    /// and state. That index sorts a queue's tasks by due time, not id, so a page by id from
    /// it sorts the whole range first (130 ms for a million ready tasks); a crowded range is
    /// better walked in id order, where a page is found after a few rows (2 ms). A sparse
    /// one is the other way round, hence the bounded probe (a millisecond) to tell them apart.
    fn is_crowded(&self, filter: &TaskFilter, now: i64) -> Result<bool> {
        let (Some(queue), Some(state)) = (&filter.queue, filter.state) else {
            return Ok(false);
        };
        let range = match state {
            ListState::Ready => "AND run_at <= ?3",
            ListState::Delayed => "AND run_at > ?3",
            ListState::Running => return Ok(false), // few, in a partial index of their own
            ListState::Failed | ListState::Done => "",
        };
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE queue = ?1 AND state = ?2 {range} \
             LIMIT ?4)"
        );
        let state = state.task_state().as_str();
        let found = self.with(|conn| {
            conn.prepare_cached(&sql)?
                .query_row(params![queue, state, now, CROWDED as i64], |row| {
                    get_u64(row, 0)
                })
        })?;
        Ok(found >= CROWDED)
    }

    pub(super) fn count(&self, filter: &TaskFilter) -> Result<u64> {
        if let Some(queue) = &filter.queue {
            validate_queue_name(queue)?;
        }
        let (conditions, params) = conditions(filter, now_ms());
        let sql = format!("SELECT COUNT(*) FROM tasks WHERE {conditions}");
        self.with(|conn| {
            conn.prepare_cached(&sql)?
                .query_row(params_from_iter(params), |row| get_u64(row, 0))
        })
    }

    pub(super) fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        let ids = serde_json::Value::from(ids).to_string();
        let purged = self.with(|conn| {
            conn.prepare_cached(PURGE_FAILED_BY_IDS)?
                .execute(params![ids])
        })?;
        Ok(purged as u64)
    }

    pub(super) fn beat(&self, record: &MasterRecord) -> Result<()> {
        let json = serde_json::to_string(record).map_err(|e| TransportError::Backend {
            transport: super::TRANSPORT.to_string(),
            message: format!("cannot encode a master's record: {e}"),
        })?;
        let expires_at = to_epoch_ms(record.expires_at);
        self.with(|conn| {
            conn.prepare_cached(BEAT)?
                .execute(params![record.id, json, expires_at])?;
            // Records of masters that vanished go with the next beat of any master.
            conn.prepare_cached(PRUNE_MASTERS)?
                .execute(params![now_ms()])
        })?;
        Ok(())
    }

    pub(super) fn forget_master(&self, id: &str) -> Result<()> {
        self.with(|conn| conn.prepare_cached(FORGET_MASTER)?.execute(params![id]))?;
        Ok(())
    }

    pub(super) fn masters(&self) -> Result<Vec<MasterRecord>> {
        let records: Vec<String> = self.with(|conn| {
            conn.prepare_cached(MASTERS)?
                .query_map(params![now_ms()], |row| row.get(0))?
                .collect()
        })?;
        // A record this rex cannot read (another version's) is skipped, not fatal.
        Ok(records
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{Submit, Transport};

    /// A crowded range is walked in id order, a sparse one through the index: the pages are
    /// the same either way.
    #[tokio::test]
    async fn crowded_and_sparse_listings_page_alike() {
        let dir = tempfile::tempdir().unwrap();
        let t = SqliteTransport::open(dir.path().join("rex.sqlite3")).unwrap();
        let submit = |n: u64| Submit {
            queue: "foo".into(),
            payload: serde_json::json!({ "n": n }).as_object().unwrap().clone(),
        };
        let ready: Vec<Submit> = (0..CROWDED + 10).map(submit).collect();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let ready_ids = Transport::submit_batch(&t, &ready, None).await.unwrap();
        let delayed_ids = Transport::submit_batch(&t, &[submit(0), submit(1)], Some(later))
            .await
            .unwrap();
        let mut filter = TaskFilter {
            queue: Some("foo".into()),
            state: Some(ListState::Ready),
            ..TaskFilter::default()
        };
        assert!(t.is_crowded(&filter, now_ms()).unwrap());
        let all = crate::console::matching_ids(&t, &filter).await.unwrap();
        assert_eq!(all, ready_ids, "every ready task, by id, across pages");
        let page = Transport::list(&t, &filter, Some(ready_ids[7]), 3)
            .await
            .unwrap();
        let ids: Vec<TaskId> = page.iter().map(|task| task.id).collect();
        assert_eq!(ids, ready_ids[8..11]);

        filter.state = Some(ListState::Delayed);
        assert!(!t.is_crowded(&filter, now_ms()).unwrap());
        let delayed = crate::console::matching_ids(&t, &filter).await.unwrap();
        assert_eq!(delayed, delayed_ids);
    }
}
