//! Script replies and arguments: decoding the rows the Lua scripts return (`TASK_FIELDS`,
//! `SUMMARY_FIELDS`, `counts`; see `lua/prelude.lua`) into the crate's types, refusing
//! unexpected data, and encoding payloads, follow-up submits and settlements for a script's
//! ARGV.

use ::redis::{FromRedisValue, Value};

use super::RedisTransport;
use super::queue::outcome;
use crate::task::{from_epoch_ms, to_epoch_ms};
use crate::{
    Attempt, QueueCounts, Result, Settlement, Submit, Task, TaskState, TaskSummary, TransportError,
    validate_queue_name,
};

/// The fields of `TASK_FIELDS` rows.
const TASK_ROW: usize = 10;
/// The fields of `SUMMARY_FIELDS` rows.
const SUMMARY_ROW: usize = 14;
/// A `STATS` row: the queue, the six values of `counts` and whether it is paused (1/0).
pub(super) const STATS_ROW: usize = 8;

/// Milliseconds, or a score as Redis prints it (`1795000000300`, `1.7e+19`).
fn parse_ms(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|ms| ms as i64))
}

impl RedisTransport {
    pub(super) fn corrupt(&self, what: impl std::fmt::Display) -> TransportError {
        TransportError::Backend {
            transport: self.display.clone(),
            message: format!("unexpected data: {what}"),
        }
    }

    pub(super) fn field<T: FromRedisValue>(&self, value: &Value, name: &str) -> Result<T> {
        ::redis::from_redis_value_ref(value)
            .map_err(|e| self.corrupt(format_args!("field {name}: {e}")))
    }

    /// A numeric field stored as a decimal string.
    pub(super) fn number<T: std::str::FromStr>(&self, value: &Value, name: &str) -> Result<T> {
        let text: String = self.field(value, name)?;
        text.parse()
            .map_err(|_| self.corrupt(format_args!("field {name} = {text:?}")))
    }

    pub(super) fn optional_ms(&self, value: &Value, name: &str) -> Result<Option<i64>> {
        match self.field::<Option<String>>(value, name)? {
            None => Ok(None),
            Some(text) => parse_ms(&text)
                .map(Some)
                .ok_or_else(|| self.corrupt(format_args!("field {name} = {text:?}"))),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, value: &Value, name: &str) -> Result<T> {
        let text: String = self.field(value, name)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(format_args!("field {name}: {e}")))
    }

    /// One TASK_FIELDS row.
    fn task_row(&self, row: &[Value]) -> Result<Task> {
        Ok(Task {
            id: self.number(&row[0], "id")?,
            queue: self.field(&row[1], "queue")?,
            payload: self.json(&row[2], "payload")?,
            attempt: self.number(&row[3], "attempts")?,
            errors: self.number(&row[4], "errors")?,
            crashes: self.number(&row[5], "crashes")?,
            lease_token: self.number(&row[6], "lease_token")?,
            owner: self
                .field::<Option<String>>(&row[7], "owner")?
                .unwrap_or_default(),
            lease_until: from_epoch_ms(self.optional_ms(&row[8], "lease_until")?.unwrap_or(0)),
            created_at: from_epoch_ms(self.number(&row[9], "created_at")?),
            lost: false,
            unwitnessed_returns: 0,
        })
    }

    /// TASK_FIELDS rows, by id; rows of tasks deleted meanwhile (all nil) are skipped.
    pub(super) fn tasks(&self, values: &[Value]) -> Result<Vec<Task>> {
        let mut tasks = values
            .chunks_exact(TASK_ROW)
            .filter(|row| row[0] != Value::Nil)
            .map(|row| self.task_row(row))
            .collect::<Result<Vec<_>>>()?;
        tasks.sort_by_key(|task| task.id);
        Ok(tasks)
    }

    /// One SUMMARY_FIELDS row. A completed task's last attempt is not in its stored history
    /// (`complete` in `prelude.lua`): it is made here from its fields.
    fn summary(&self, row: &[Value]) -> Result<TaskSummary> {
        let mut summary = self.stored_summary(row)?;
        if summary.state == TaskState::Done {
            summary.history.push(Attempt {
                attempt: summary.attempts,
                owner: self
                    .field::<Option<String>>(&row[11], "owner")?
                    .unwrap_or_default(),
                outcome: crate::Outcome::Done,
                reason: None,
                started_at: self.optional_ms(&row[13], "started_at")?,
                finished_at: summary.run_at.map_or(0, to_epoch_ms),
            });
        }
        Ok(summary)
    }

    fn stored_summary(&self, row: &[Value]) -> Result<TaskSummary> {
        let state: String = self.field(&row[2], "state")?;
        let state = TaskState::parse(&state)
            .ok_or_else(|| self.corrupt(format_args!("task state {state:?}")))?;
        Ok(TaskSummary {
            id: self.number(&row[0], "id")?,
            queue: self.field(&row[1], "queue")?,
            state,
            payload: self.json(&row[3], "payload")?,
            attempts: self.number(&row[4], "attempts")?,
            errors: self.number(&row[5], "errors")?,
            crashes: self.number(&row[6], "crashes")?,
            last_error: self.field(&row[7], "last_error")?,
            history: self.json::<Vec<Attempt>>(&row[8], "history")?,
            created_at: from_epoch_ms(self.number(&row[9], "created_at")?),
            run_at: self.optional_ms(&row[10], "run_at")?.map(from_epoch_ms),
            owner: match state {
                TaskState::Running => self.field(&row[11], "owner")?,
                _ => None,
            },
            result: match &row[12] {
                Value::Nil => None,
                value => Some(self.json(value, "result")?),
            },
        })
    }

    /// Flat SUMMARY_FIELDS rows, in the order given; rows of tasks deleted meanwhile (all nil)
    /// are skipped.
    pub(super) fn summaries(&self, values: &[Value]) -> Result<Vec<TaskSummary>> {
        if !values.len().is_multiple_of(SUMMARY_ROW) {
            return Err(self.corrupt(format_args!(
                "{} values, not rows of {SUMMARY_ROW}",
                values.len()
            )));
        }
        values
            .chunks_exact(SUMMARY_ROW)
            .filter(|row| row[0] != Value::Nil)
            .map(|row| self.summary(row))
            .collect()
    }

    /// The six values of the `counts` Lua function.
    pub(super) fn counts_from(&self, values: &[Value]) -> Result<(QueueCounts, Option<i64>)> {
        let count = |i: usize, name: &str| -> Result<u64> { self.field(&values[i], name) };
        Ok((
            QueueCounts {
                ready: count(0, "ready")?,
                delayed: count(1, "delayed")?,
                running: count(2, "running")?,
                failed: count(3, "failed")?,
                next_run_at: self
                    .optional_ms(&values[4], "next_run_at")?
                    .map(from_epoch_ms),
            },
            self.optional_ms(&values[5], "oldest created_at")?,
        ))
    }

    /// A batch claim's reply: flat TASK_FIELDS rows, kept in claim order.
    pub(super) fn claimed_rows(&self, values: &[Value]) -> Result<Vec<Task>> {
        if !values.len().is_multiple_of(TASK_ROW) {
            return Err(self.corrupt(format_args!(
                "a claim returned {} values, not rows of {TASK_ROW}",
                values.len()
            )));
        }
        values
            .chunks_exact(TASK_ROW)
            .map(|row| self.task_row(row))
            .collect()
    }

    /// A `settle` reply: one 1 (applied) or 0 (stale) for each of `expected` settlements.
    pub(super) fn applied(&self, values: &[Value], expected: usize) -> Result<Vec<bool>> {
        if values.len() != expected {
            return Err(self.corrupt(format_args!(
                "{} results for {expected} settlements",
                values.len()
            )));
        }
        values
            .iter()
            .map(|value| Ok(self.field::<i64>(value, "applied")? == 1))
            .collect()
    }

    /// Add `batch` to a script's ARGV as the `settle` Lua function reads it (see `scripts.rs`).
    /// The caller validated the submits.
    pub(super) fn push_settlements(
        &self,
        args: &mut Vec<String>,
        batch: &[Settlement],
    ) -> Result<()> {
        for settlement in batch {
            let lease = settlement.lease();
            let kind = match settlement {
                Settlement::Complete { .. } => "complete",
                Settlement::Fail { .. } => "fail",
                Settlement::Release { .. } => "release",
            };
            args.extend([
                kind.to_string(),
                lease.id.to_string(),
                lease.token.to_string(),
            ]);
            match settlement {
                Settlement::Complete {
                    submits, result, ..
                } => {
                    args.push(match result {
                        Some(result) => self.encode(result)?,
                        None => String::new(),
                    });
                    args.push(submits.len().to_string());
                    for submit in submits {
                        args.push(submit.queue.clone());
                        args.push(self.encode(&submit.payload)?);
                    }
                }
                Settlement::Fail {
                    failure, retry_at, ..
                } => {
                    args.push(outcome(failure).to_string());
                    args.push(failure.reason.clone());
                    args.push(self.encode(&failure.reason)?);
                    args.push(retry_at.map_or(String::new(), |t| to_epoch_ms(t).to_string()));
                }
                Settlement::Release { reason, .. } => args.push(self.encode(reason)?),
            }
        }
        Ok(())
    }

    /// Validate follow-up submits (before anything changes) and add them to a script's ARGV.
    pub(super) fn push_submits(&self, args: &mut Vec<String>, submits: &[Submit]) -> Result<()> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        for submit in submits {
            args.push(submit.queue.clone());
            args.push(self.encode(&submit.payload)?);
        }
        Ok(())
    }

    pub(super) fn encode<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<String> {
        serde_json::to_string(value).map_err(|e| TransportError::Backend {
            transport: self.display.clone(),
            message: format!("cannot encode: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_as_milliseconds() {
        assert_eq!(parse_ms("1795000000300"), Some(1_795_000_000_300));
        assert_eq!(parse_ms("1.5e3"), Some(1500));
        assert_eq!(parse_ms("x"), None);
    }
}
