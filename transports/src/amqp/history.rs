//! Throughput history ([`crate::history`]). RabbitMQ keeps no values by key to add to, so
//! each recording of a master is one message on `P._history` — its per-minute rows as JSON,
//! persistent, expiring after [`HISTORY_KEPT`] — and a reading takes every message (giving
//! them back in place, as listings do) and sums the rows of each queue and minute. Masters
//! record once a minute here ([`history_interval`](crate::Transport::history_interval)), so
//! the queue holds about one message per master and minute of the last day (bounded by
//! `x-max-length`, dropping the oldest). Messages that are not history, or hold only rows
//! older than a day (RabbitMQ drops an expired message only when it reaches the head), are
//! deleted by the reading that sees them, and so are repeats of a recording (by its name: a
//! master repeats a recording whose confirm it did not get). As with every listing on RabbitMQ, two readings at
//! the same instant may each miss the messages the other holds for a moment.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use lapin::BasicProperties;
use serde::{Deserialize, Serialize};

use super::Inner;
use crate::history::{self, HISTORY_KEPT, minute_of};
use crate::{HistoryRow, Result};

/// One recording as published: its name (see
/// [`record_history`](crate::Transport::record_history)) and its rows.
#[derive(Serialize, Deserialize)]
struct Recording {
    recording: String,
    rows: Vec<HistoryRow>,
}

/// What a history message holds: a named recording, or (before names) its rows alone.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Named(Recording),
    Rows(Vec<HistoryRow>),
}

impl Inner {
    pub(super) async fn record_history(
        self: Arc<Self>,
        recording: String,
        rows: Vec<HistoryRow>,
    ) -> Result<()> {
        let session = self.session().await?;
        let name = self.declare_history(&session).await?;
        let data = serde_json::to_vec(&Recording { recording, rows })
            .map_err(|e| self.backend(format_args!("cannot encode: {e}")))?;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_expiration(HISTORY_KEPT.as_millis().to_string().into());
        let confirmation = self
            .publish_with(&session, "", &name, &data, Some(properties), true)
            .await?;
        self.require_ack(confirmation, "", &name)
    }

    pub(super) async fn history(
        self: Arc<Self>,
        queue: Option<String>,
        since: i64,
    ) -> Result<Vec<HistoryRow>> {
        let session = self.session().await?;
        let Some((channel, messages)) = self.browse(&session, &self.history_name()).await? else {
            return Ok(Vec::new()); // nothing was ever recorded
        };
        let oldest = minute_of(SystemTime::now() - HISTORY_KEPT);
        let mut rows = Vec::new();
        let mut doomed = Vec::new();
        let mut seen = HashSet::new();
        for (tag, data) in messages {
            let recorded = match serde_json::from_slice::<Stored>(&data) {
                // A recording published twice (its confirm was lost, the master repeated
                // it) counts once; the repeat goes.
                Ok(Stored::Named(r)) if !seen.insert(r.recording.clone()) => Err(()),
                Ok(Stored::Named(r)) => Ok(r.rows),
                Ok(Stored::Rows(rows)) => Ok(rows),
                Err(_) => Err(()),
            };
            match recorded {
                Ok(recorded) if recorded.iter().any(|row| row.minute >= oldest) => {
                    let wanted = recorded
                        .into_iter()
                        .filter(|row| history::wanted(row, queue.as_deref(), since));
                    history::merge(&mut rows, wanted);
                }
                _ => doomed.push(tag),
            }
        }
        self.ack_and_close(&channel, doomed).await?;
        Ok(rows)
    }
}
