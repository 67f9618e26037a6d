//! What the operator console reads and does beyond the delivery path: pause flags (the
//! `paused_queues` table, which every claim statement checks), task lookup, filtered listings
//! (keyset pagination by id) and counts, purging selected failed tasks, and the masters'
//! heartbeat records (the `masters` table).
//!
//! A listing's statement is put together from the conditions its filter sets (the head from
//! `sql/queries/list.sql` or `count.sql`), so that the planner sees only those: a listing of
//! one queue and state reads the `(queue, state, id)` index in id order. There are few such
//! combinations; the pool's statement cache prepares each once per connection.

use std::time::SystemTime;

use tokio_postgres::types::ToSql;

use super::PgsqlTransport;
use super::connection::{BULK_TIMEOUT, Fail};
use super::rows::{clamp_time, get_u64, now, summary_from_row, text};
use crate::console::{CANCEL_REQUEST_KEPT, MAX_PAGE};
use crate::task::{from_epoch_ms, to_epoch_ms};
use crate::{
    ListState, MasterRecord, Result, TaskFilter, TaskId, TaskSummary, validate_queue_name,
};

/// A parameter of a statement put together here.
type Param = Box<dyn ToSql + Sync + Send>;

/// The `WHERE` clause of a filter and its parameters (`$1`, `$2`, ... in the order bound).
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    /// The conditions of `filter`, judged at `now` (ready vs delayed), like
    /// [`TaskFilter::matches`].
    fn of(filter: &TaskFilter, now: SystemTime) -> Self {
        let mut c = Conditions::default();
        let state = match filter.state {
            None => "state <> 'done'".to_string(),
            Some(ListState::Ready) => format!("state = 'pending' AND run_at <= {}", c.bind(now)),
            Some(ListState::Delayed) => format!("state = 'pending' AND run_at > {}", c.bind(now)),
            Some(ListState::Running) => "state = 'running'".to_string(),
            Some(ListState::Failed) => "state = 'failed'".to_string(),
            Some(ListState::Done) => "state = 'done'".to_string(),
        };
        c.clauses.push(state);
        if let Some(queue) = &filter.queue {
            let queue = c.bind(text(queue).into_owned());
            c.clauses.push(format!("queue = {queue}::text"));
        }
        if let Some(needle) = &filter.text {
            // `strpos`, not `LIKE`: the text is a plain substring, `%` and `_` included.
            let needle = c.bind(text(needle).into_owned());
            let id = match filter.text_id() {
                Some(id) => format!(" OR id = {}::bigint", c.bind(id)),
                None => String::new(),
            };
            c.clauses.push(format!(
                "(strpos(payload::text, {needle}::text) > 0 OR strpos(last_error, {needle}::text) > 0{id})"
            ));
        }
        // Compared to the millisecond, like the reference: a due time within the
        // millisecond of `since` is at it, one within that of `until` is not before it.
        if let Some(since) = filter.since {
            let since = c.bind(to_ms(since));
            c.clauses.push(format!("run_at >= {since}::timestamptz"));
        }
        if let Some(until) = filter.until {
            let until = c.bind(to_ms(until));
            c.clauses.push(format!("run_at < {until}::timestamptz"));
        }
        c
    }

    /// `$n` for `value`, bound next.
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn sql(&self) -> String {
        format!(" WHERE {}", self.clauses.join(" AND "))
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|param| param.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// `t` as stored, truncated to the millisecond.
fn to_ms(t: SystemTime) -> SystemTime {
    clamp_time(from_epoch_ms(to_epoch_ms(t)))
}

fn encode_record(record: &MasterRecord) -> Result<String, Fail> {
    serde_json::to_string(record)
        .map_err(|e| Fail::Data(format!("cannot encode a master's record: {e}")))
}

fn decode_record(json: &str) -> Result<MasterRecord, Fail> {
    serde_json::from_str(json).map_err(|e| Fail::Data(format!("corrupt master's record: {e}")))
}

impl PgsqlTransport {
    pub(super) async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        validate_queue_name(queue)?;
        self.run(async {
            let client = self.client().await?;
            let changed = if paused {
                let stmt = client.prepare_cached(&self.sql.pause).await?;
                client.execute(&stmt, &[&queue]).await?
            } else {
                let stmt = client.prepare_cached(&self.sql.resume).await?;
                client.query(&stmt, &[&queue, &self.channel]).await?.len() as u64
            };
            Ok(changed == 1)
        })
        .await
    }

    pub(super) async fn paused(&self) -> Result<Vec<String>> {
        self.texts(&self.sql.paused).await
    }

    /// The first column of what `sql` (no parameters) returns, as text.
    pub(super) async fn texts(&self, sql: &str) -> Result<Vec<String>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(sql).await?;
            let rows = client.query(&stmt, &[]).await?;
            Ok(rows
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    pub(super) async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        let reason = text(reason);
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.cancel_pending).await?;
            let now = now();
            let ms = to_epoch_ms(now);
            Ok(client.execute(&stmt, &[&id, &reason, &now, &ms]).await? == 1)
        })
        .await
    }

    pub(super) async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.request_cancel).await?;
            let now = now();
            let oldest = now - CANCEL_REQUEST_KEPT;
            client
                .execute(&stmt, &[&id, &attempt, &now, &oldest])
                .await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.cancel_requests).await?;
            let rows = client
                .query(&stmt, &[&(now() - CANCEL_REQUEST_KEPT)])
                .await?;
            rows.iter()
                .map(|row| {
                    let attempt: i32 = row.try_get(1)?;
                    Ok((row.try_get(0)?, u32::try_from(attempt).unwrap_or(0)))
                })
                .collect()
        })
        .await
    }

    pub(super) async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.task).await?;
            let mut row = client.query_opt(&stmt, &[&id]).await?;
            if row.is_none() {
                let stmt = client.prepare_cached(&self.sql.task_completed).await?;
                row = client.query_opt(&stmt, &[&id]).await?;
            }
            row.as_ref().map(summary_from_row).transpose()
        })
        .await
    }

    pub(super) async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        let limit = limit.min(MAX_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.run_within(BULK_TIMEOUT, async {
            let mut c = Conditions::of(filter, now());
            if let Some(after) = after {
                let after = c.bind(after);
                c.clauses.push(format!("id > {after}::bigint"));
            }
            let limit = c.bind(limit as i64);
            let head = match filter.state {
                Some(ListState::Done) => &self.sql.list_completed,
                _ => &self.sql.list,
            };
            let sql = format!("{head}{} ORDER BY id LIMIT {limit}", c.sql());
            let client = self.client().await?;
            let stmt = client.prepare_cached(&sql).await?;
            let rows = client.query(&stmt, &c.params()).await?;
            rows.iter().map(summary_from_row).collect()
        })
        .await
    }

    pub(super) async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        self.run_within(BULK_TIMEOUT, async {
            let c = Conditions::of(filter, now());
            let head = match filter.state {
                Some(ListState::Done) => &self.sql.count_completed,
                _ => &self.sql.count,
            };
            let sql = format!("{head}{}", c.sql());
            let client = self.client().await?;
            let stmt = client.prepare_cached(&sql).await?;
            get_u64(&client.query_one(&stmt, &c.params()).await?, 0)
        })
        .await
    }

    pub(super) async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.run_within(BULK_TIMEOUT, async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.purge_failed).await?;
            Ok(client.execute(&stmt, &[&ids]).await?)
        })
        .await
    }

    pub(super) async fn beat(&self, record: &MasterRecord) -> Result<()> {
        self.run(async {
            let json = encode_record(record)?;
            let id = text(&record.id);
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.beat).await?;
            let expires_at = clamp_time(record.expires_at);
            client.execute(&stmt, &[&id, &json, &expires_at]).await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn forget_master(&self, id: &str) -> Result<()> {
        let id = text(id);
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.forget_master).await?;
            client.execute(&stmt, &[&id]).await?;
            Ok(())
        })
        .await
    }

    /// The live records, by id; the expired ones are deleted on the way.
    pub(super) async fn masters(&self) -> Result<Vec<MasterRecord>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.masters).await?;
            let rows = client.query(&stmt, &[&now()]).await?;
            rows.iter()
                .map(|row| decode_record(row.try_get(0)?))
                .collect()
        })
        .await
    }
}
