//! What the operator console reads and does: pause flags (`P:paused`), task lookup, filtered
//! listings and counts (`lua/list.lua`, over the state indexes), purging selected failed
//! tasks, and master heartbeats (`P:master:ID` with an expiry, indexed by `P:masters`). The
//! reads are sent again once after a dropped connection; the changes are not.

use std::time::SystemTime;

use ::redis::Value;

use super::RedisTransport;
use super::scripts::SCRIPTS;
use crate::console::{CANCEL_REQUEST_KEPT, MAX_PAGE};
use crate::task::{now_ms, to_epoch_ms};
use crate::{
    ListState, MasterRecord, Result, TaskFilter, TaskId, TaskSummary, validate_queue_name,
};

impl RedisTransport {
    pub(super) async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool> {
        validate_queue_name(queue)?;
        let args = [
            queue.to_string(),
            if paused { "1" } else { "0" }.to_string(),
            now_ms().to_string(),
        ];
        let changed: i64 = self.eval(&SCRIPTS.set_paused, &args, false).await?;
        Ok(changed == 1)
    }

    pub(super) async fn cancel_pending(&self, id: TaskId, reason: &str) -> Result<bool> {
        let args = [
            id.to_string(),
            reason.to_string(),
            self.encode(&reason)?,
            now_ms().to_string(),
        ];
        let changed: i64 = self.eval(&SCRIPTS.cancel_pending, &args, false).await?;
        Ok(changed == 1)
    }

    /// `ZADD` of `ID:ATTEMPT` at now, and the requests older than an hour dropped.
    pub(super) async fn request_cancel(&self, id: TaskId, attempt: u32) -> Result<()> {
        let key = format!("{}:cancel_requests", self.prefix);
        let now = now_ms();
        let oldest = now - i64::try_from(CANCEL_REQUEST_KEPT.as_millis()).unwrap_or(i64::MAX);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({oldest}"))
            .ignore()
            .cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(format!("{id}:{attempt}"))
            .ignore();
        let mut connection = self.connection().await?;
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.command_error(e))
    }

    pub(super) async fn cancel_requests(&self) -> Result<Vec<(TaskId, u32)>> {
        let oldest = now_ms() - i64::try_from(CANCEL_REQUEST_KEPT.as_millis()).unwrap_or(i64::MAX);
        let mut command = ::redis::cmd("ZRANGEBYSCORE");
        command
            .arg(format!("{}:cancel_requests", self.prefix))
            .arg(oldest)
            .arg("+inf");
        let mut connection = self.connection().await?;
        let members: Vec<String> = match command.query_async(&mut connection).await {
            Err(e) if e.is_connection_dropped() => command.query_async(&mut connection).await,
            result => result,
        }
        .map_err(|e| self.command_error(e))?;
        Ok(members
            .iter()
            .filter_map(|m| {
                let (id, attempt) = m.split_once(':')?;
                Some((id.parse().ok()?, attempt.parse().ok()?))
            })
            .collect())
    }

    pub(super) async fn paused(&self) -> Result<Vec<String>> {
        self.members(&format!("{}:paused", self.prefix)).await
    }

    /// The members of the set `key`, sorted (sent again once after a dropped connection).
    pub(super) async fn members(&self, key: &str) -> Result<Vec<String>> {
        let mut command = ::redis::cmd("SMEMBERS");
        command.arg(key);
        let mut connection = self.connection().await?;
        let mut members: Vec<String> = match command.query_async(&mut connection).await {
            Err(e) if e.is_connection_dropped() => command.query_async(&mut connection).await,
            result => result,
        }
        .map_err(|e| self.command_error(e))?;
        members.sort();
        Ok(members)
    }

    pub(super) async fn task(&self, id: TaskId) -> Result<Option<TaskSummary>> {
        let row: Vec<Value> = self.eval(&SCRIPTS.task, &[id.to_string()], true).await?;
        Ok(self.summaries(&row)?.pop())
    }

    pub(super) async fn list(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        let limit = limit.min(MAX_PAGE);
        let Some(mut args) = self.filter_args("list", filter) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        args.push(after.unwrap_or(0).to_string());
        args.push(limit.to_string());
        let rows: Vec<Value> = self.eval(&SCRIPTS.list, &args, true).await?;
        self.summaries(&rows)
    }

    pub(super) async fn count(&self, filter: &TaskFilter) -> Result<u64> {
        let Some(mut args) = self.filter_args("count", filter) else {
            return Ok(0);
        };
        args.extend(["0".to_string(), "0".to_string()]);
        self.eval(&SCRIPTS.list, &args, true).await
    }

    /// The ARGV of `list.lua` but `after` and `limit`; `None` when nothing can match (a queue
    /// name no task can have).
    fn filter_args(&self, mode: &str, filter: &TaskFilter) -> Option<Vec<String>> {
        if let Some(queue) = &filter.queue
            && validate_queue_name(queue).is_err()
        {
            return None;
        }
        let ms = |t: Option<SystemTime>| t.map_or(String::new(), |t| to_epoch_ms(t).to_string());
        Some(vec![
            mode.to_string(),
            now_ms().to_string(),
            filter.queue.clone().unwrap_or_default(),
            filter.state.map_or("", ListState::as_str).to_string(),
            if filter.text.is_some() { "1" } else { "0" }.to_string(),
            filter.text.clone().unwrap_or_default(),
            filter.text_id().map_or(String::new(), |id| id.to_string()),
            ms(filter.since),
            ms(filter.until),
        ])
    }

    pub(super) async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let args: Vec<String> = ids.iter().map(TaskId::to_string).collect();
        self.eval(&SCRIPTS.purge_failed, &args, false).await
    }

    pub(super) async fn beat(&self, record: &MasterRecord) -> Result<()> {
        let args = [
            record.id.clone(),
            self.encode(record)?,
            to_epoch_ms(record.expires_at).to_string(),
            now_ms().to_string(),
        ];
        let _: i64 = self.eval(&SCRIPTS.beat, &args, false).await?;
        Ok(())
    }

    pub(super) async fn forget_master(&self, id: &str) -> Result<()> {
        let _: i64 = self
            .eval(&SCRIPTS.forget_master, &[id.to_string()], false)
            .await?;
        Ok(())
    }

    pub(super) async fn masters(&self) -> Result<Vec<MasterRecord>> {
        let now = SystemTime::now();
        let records: Vec<String> = self
            .eval(&SCRIPTS.masters, &[to_epoch_ms(now).to_string()], true)
            .await?;
        let mut masters = Vec::with_capacity(records.len());
        for text in &records {
            let record: MasterRecord = serde_json::from_str(text)
                .map_err(|e| self.corrupt(format_args!("master record: {e}")))?;
            if record.is_live(now) {
                masters.push(record);
            }
        }
        masters.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(masters)
    }
}
