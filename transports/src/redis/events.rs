//! Redis's lifecycle events: `PUBLISH` on `<prefix>:events`, followed with `SUBSCRIBE` on a
//! connection of the follower's own; `PUBSUB NUMSUB` says whether anyone follows.

use futures_util::StreamExt;

use super::RedisTransport;
use super::connection::CONNECT_TIMEOUT;
use crate::events::{EventFeed, FEED_BUFFER, decode, encode};
use crate::{Result, TaskEvent, TransportError};

/// The largest message: Redis takes far more, but a follower's client buffers it whole.
const MAX_MESSAGE: usize = 64 * 1024;

impl RedisTransport {
    fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    pub(super) async fn publish_now(&self, events: &[TaskEvent]) -> Result<()> {
        let channel = self.events_channel();
        let mut pipe = ::redis::pipe();
        for message in encode(events, MAX_MESSAGE) {
            pipe.cmd("PUBLISH").arg(&channel).arg(message).ignore();
        }
        let mut connection = self.connection().await?;
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.command_error(e))
    }

    pub(super) async fn followed_now(&self) -> Result<bool> {
        let mut connection = self.connection().await?;
        let counts: Vec<(String, i64)> = ::redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(self.events_channel())
            .query_async(&mut connection)
            .await
            .map_err(|e| self.command_error(e))?;
        Ok(counts.iter().any(|(_, n)| *n > 0))
    }

    pub(super) async fn follow_now(&self) -> Result<EventFeed> {
        let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| TransportError::Unavailable {
                transport: self.display.clone(),
                message: "connecting to follow the events timed out".to_string(),
            })?
            .map_err(|e| self.error(e))?;
        pubsub
            .subscribe(self.events_channel())
            .await
            .map_err(|e| self.error(e))?;
        let mut messages = pubsub.into_on_message();
        let display = self.display.clone();
        let (feed, events) = tokio::sync::mpsc::channel(FEED_BUFFER);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = messages.next() => message,
                    () = feed.closed() => return,
                };
                let Some(message) = message else {
                    let lost = TransportError::Unavailable {
                        transport: display,
                        message: "the connection following the events was lost".to_string(),
                    };
                    let _ = feed.send(Err(lost)).await;
                    return;
                };
                let batch = decode(message.get_payload_bytes());
                if !batch.is_empty() && feed.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
        });
        Ok(events)
    }
}
