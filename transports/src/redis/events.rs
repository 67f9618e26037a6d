//! Redis's lifecycle events: `PUBLISH` on `<prefix>:events`, followed with `SUBSCRIBE` on a
//! connection of the follower's own; `PUBSUB NUMSUB` says whether anyone follows.

use std::time::Duration;

use futures_util::StreamExt;

use super::RedisTransport;
use super::connection::CONNECT_TIMEOUT;
use crate::events::{EventFeed, FEED_BUFFER, decode, encode};
use crate::{Result, TaskEvent, TransportError};

/// The largest message: Redis takes far more, but a follower's client buffers it whole.
const MAX_MESSAGE: usize = 64 * 1024;
/// A follower's connection is pinged this often, and given up when a ping is not answered
/// within `PING_TIMEOUT`.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

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
        let timed_out = || TransportError::Unavailable {
            transport: self.display.clone(),
            message: "subscribing to follow the events timed out".to_string(),
        };
        let subscribed = tokio::time::timeout(CONNECT_TIMEOUT * 2, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.events_channel()).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        })
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| self.error(e))?;
        let (mut sink, mut messages) = subscribed.split();
        let display = self.display.clone();
        let (feed, events) = tokio::sync::mpsc::channel(FEED_BUFFER);
        tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.tick().await; // the first tick is now
            let lost = |message: &str| TransportError::Unavailable {
                transport: display.clone(),
                message: format!("the connection following the events was lost ({message})"),
            };
            loop {
                let message = tokio::select! {
                    message = messages.next() => message,
                    () = feed.closed() => return,
                    _ = ping.tick() => {
                        // A half-open connection never ends by itself: a ping unanswered
                        // in time ends the feed, as a closed connection does.
                        let answered = tokio::time::timeout(
                            PING_TIMEOUT,
                            sink.ping::<::redis::Value>(),
                        )
                        .await;
                        match answered {
                            Ok(Ok(_)) => continue,
                            Ok(Err(e)) => {
                                let _ = feed.send(Err(lost(&e.to_string()))).await;
                                return;
                            }
                            Err(_) => {
                                let _ = feed.send(Err(lost("no answer to a ping"))).await;
                                return;
                            }
                        }
                    }
                };
                let Some(message) = message else {
                    let _ = feed.send(Err(lost("closed"))).await;
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
