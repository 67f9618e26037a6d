//! [`wait`](crate::Transport::wait): a probe script, then `BLPOP` on the queue's signal list
//! (on connections of its own, pooled per runtime) until a wake-up token arrives, the timeout
//! passes or the earliest delayed task becomes due; on a paused queue, until it is resumed.
//! See the module docs, "Waiting".

use std::time::Duration;

use ::redis::Value;
use tokio::time::Instant;

use super::RedisTransport;
use super::scripts::SCRIPTS;
use crate::task::now_ms;
use crate::{Result, validate_queue_name};

/// One `BLPOP` blocks at most this long; `wait` then checks the queue again and blocks anew.
const MAX_BLOCK: Duration = Duration::from_secs(60);
/// A `BLPOP` whose reply is this late after its own timeout is abandoned with its connection
/// (a half-open TCP connection would otherwise block the waiter forever).
const BLOCK_GRACE: Duration = Duration::from_secs(5);
/// Idle blocking connections kept per runtime for the next `wait`.
const IDLE_BLOCKING_CONNECTIONS: usize = 4;

impl RedisTransport {
    /// Returns as soon as a task is ready in `queue` (announced by a wake-up token, or due by
    /// its `run_at`), or when `timeout` passes. See the module docs.
    pub(super) async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        let start = Instant::now();
        let deadline = start
            .checked_add(timeout)
            .unwrap_or_else(|| start + Duration::from_secs(365 * 86_400));
        loop {
            let now = now_ms();
            let args = [queue.to_string(), now.to_string()];
            let probe: Vec<Value> = self.eval(&SCRIPTS.probe, &args, true).await?;
            // Paused: nothing is ready until a resume, whose wake-up token sends us back to
            // the probe (so do the tokens of submits meanwhile).
            let paused = probe.first() == Some(&Value::Int(2));
            if !paused && probe.first() != Some(&Value::Int(0)) {
                return Ok(()); // a task is ready
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let mut block = left.min(MAX_BLOCK);
            let next_run_at = match probe.get(1) {
                Some(next) => self.optional_ms(next, "next_run_at")?,
                None => None,
            };
            if let Some(next_run_at) = next_run_at {
                // One millisecond more, so that the task is due when we wake up.
                let until_due = u64::try_from(next_run_at.saturating_sub(now)).unwrap_or(0);
                block = block.min(Duration::from_millis(until_due.saturating_add(1)));
            }
            if self.blpop(queue, block).await? && !paused {
                return Ok(());
            }
        }
    }

    /// `BLPOP` the signal list of `queue` for at most `block`. `true` when a token came.
    async fn blpop(&self, queue: &str, block: Duration) -> Result<bool> {
        let key = format!("{}:q:{queue}:signal", self.prefix);
        let seconds = format!("{:.3}", block.max(Duration::from_millis(1)).as_secs_f64());
        let mut command = ::redis::cmd("BLPOP");
        command.arg(&key).arg(&seconds);
        let mut retried = false;
        loop {
            let pooled = self.with_runtime(|r| r.blocking.pop())?;
            let reused = pooled.is_some();
            let mut connection = match pooled {
                Some(connection) => connection,
                None => self.blocking_connection().await?,
            };
            let reply = tokio::time::timeout(
                block + BLOCK_GRACE,
                command.query_async::<Option<(String, String)>>(&mut connection),
            )
            .await;
            match reply {
                // No reply long after the server's timeout: drop the connection as dead.
                Err(_) => return Ok(false),
                Ok(Ok(token)) => {
                    self.with_runtime(|r| {
                        if r.blocking.len() < IDLE_BLOCKING_CONNECTIONS {
                            r.blocking.push(connection);
                        }
                    })?;
                    return Ok(token.is_some());
                }
                // An idle connection may have died meanwhile (a server restart): try a new one.
                Ok(Err(e)) if reused && !retried && e.is_io_error() => retried = true,
                Ok(Err(e)) => return Err(self.error(e)),
            }
        }
    }
}
