//! SQLite's lifecycle events: datagrams to the followers registered on the database's
//! `events` bus (the wake bus's mechanism, `wake.rs`, on a channel of its own), so following
//! costs the database nothing. Followers on other hosts cannot follow (nor can they share the
//! database file safely).

use crate::events::{EventFeed, FEED_BUFFER, decode, encode};
use crate::{Result, TaskEvent, TransportError};

use super::SqliteTransport;
use super::wake::WakeBus;

/// The largest datagram sent. A datagram counts against the sender's socket buffer (208 KiB
/// by default) until its receiver reads it, and a receiver queues at most
/// `net.unix.max_dgram_qlen` (10) of them: small messages keep a stalled follower from
/// holding much of the buffer every other follower's events go through.
const MAX_MESSAGE: usize = 8 * 1024;

impl SqliteTransport {
    pub(super) fn publish_now(&self, events: &[TaskEvent]) {
        for message in encode(events, MAX_MESSAGE) {
            self.events.send(message.as_bytes());
        }
    }

    pub(super) fn followed_now(&self) -> bool {
        self.events.has_peers()
    }

    pub(super) fn follow_now(&self) -> Result<EventFeed> {
        let bus = WakeBus::on(&self.path, "events");
        let socket = bus
            .listener()
            .and_then(|socket| tokio::net::UnixDatagram::from_std(socket).ok())
            .ok_or_else(|| {
                TransportError::Unsupported(format!(
                    "sqlite:{}: cannot register a follower of events next to the database",
                    self.path.display()
                ))
            })?;
        let (feed, events) = tokio::sync::mpsc::channel(FEED_BUFFER);
        tokio::spawn(async move {
            // Owned here: the registration lasts as long as the follower reads.
            let _bus = bus;
            let mut buf = vec![0u8; MAX_MESSAGE + 1024];
            loop {
                let received = tokio::select! {
                    received = socket.recv(&mut buf) => received,
                    () = feed.closed() => return,
                };
                let batch = match received {
                    Ok(n) => decode(&buf[..n]),
                    Err(e) => {
                        let error = TransportError::Backend {
                            transport: "the events bus".to_string(),
                            message: e.to_string(),
                        };
                        let _ = feed.send(Err(error)).await;
                        return;
                    }
                };
                if !batch.is_empty() && feed.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
        });
        Ok(events)
    }
}
