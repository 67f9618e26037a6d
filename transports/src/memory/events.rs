//! The memory transport's lifecycle events: a broadcast channel within the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

use crate::TaskEvent;
use crate::events::{EventFeed, FEED_BUFFER};

pub(super) struct Hub {
    sender: broadcast::Sender<Arc<Vec<TaskEvent>>>,
    /// Batches published, for tests of the publishers.
    published: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            sender: broadcast::channel(FEED_BUFFER).0,
            published: AtomicU64::new(0),
        }
    }
}

impl Hub {
    pub(super) fn publish(&self, events: &[TaskEvent]) {
        self.published.fetch_add(1, Ordering::Relaxed);
        // No receiver: nobody follows, nothing to do.
        let _ = self.sender.send(Arc::new(events.to_vec()));
    }

    pub(super) fn followed(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// A feed of what is published from now on; a follower that falls more than
    /// [`FEED_BUFFER`] batches behind loses the oldest (as a network follower would).
    pub(super) fn follow(&self) -> EventFeed {
        let mut receiver = self.sender.subscribe();
        let (feed, events) = tokio::sync::mpsc::channel(FEED_BUFFER);
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = receiver.recv() => received,
                    // Gone: stop counting as a follower at once, not at the next publish.
                    () = feed.closed() => return,
                };
                let batch = match received {
                    Ok(batch) => batch,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if feed.send(Ok(batch.to_vec())).await.is_err() {
                    return; // the follower is gone
                }
            }
        });
        events
    }
}

impl super::MemoryTransport {
    /// How many batches of events were published through this transport (whether or not
    /// anyone followed): lets tests check that a publisher stays quiet.
    pub fn published_event_batches(&self) -> u64 {
        self.events.published.load(Ordering::Relaxed)
    }
}
