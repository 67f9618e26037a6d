//! The queue statistics every page, poll and scrape starts from, shared while they are
//! expensive to get.
//!
//! `Transport::stats` is cheap on a small backlog and costly on a large one (SQLite counts a
//! million tasks in about 400 ms). With the overview polling every 2 s, a Prometheus scrape and
//! a few operators, each computing its own would keep the database busy and make every page as
//! slow as the count. So the cost decides:
//!
//! * a count that took less than [`CHEAP`] is not kept: every request gets a fresh one, and a
//!   page always shows what was there when it was asked for;
//! * after a slower one, requests get the kept statistics at once while they are younger
//!   than [`FRESH`]; older ones (up to [`STALE`]) are still answered at once, and one
//!   background refresh replaces them (stale-while-revalidate); older than that, the request
//!   waits for a new count (one count at a time, whoever waits).
//!
//! Every action the console performs (a POST) drops the kept statistics, so the page it
//! redirects to shows its effect.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rex_transport::{QueueStats, Result, Transport};

/// A count faster than this is not kept.
pub const CHEAP: Duration = Duration::from_millis(20);
/// Kept statistics younger than this are served without a refresh.
pub const FRESH: Duration = Duration::from_secs(1);
/// Kept statistics older than this are not served at all.
pub const STALE: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Snapshot {
    kept: Mutex<Kept>,
    /// Held by whoever counts, so that concurrent requests wait for one count.
    counting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Kept {
    stats: Option<(Instant, Arc<Vec<QueueStats>>)>,
    refreshing: bool,
}

/// What a request does with the kept statistics.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Serve,
    ServeAndRefresh,
    Count,
}

fn plan(age: Option<Duration>, refreshing: bool) -> Plan {
    match age {
        Some(age) if age < FRESH => Plan::Serve,
        Some(age) if age < STALE && refreshing => Plan::Serve,
        Some(age) if age < STALE => Plan::ServeAndRefresh,
        _ => Plan::Count,
    }
}

impl Snapshot {
    /// The statistics, fresh or kept per the rules above.
    pub async fn stats(
        self: &Arc<Self>,
        transport: &Arc<dyn Transport>,
    ) -> Result<Arc<Vec<QueueStats>>> {
        let (kept, action) = {
            let mut kept = self.lock();
            let age = kept.stats.as_ref().map(|(at, _)| at.elapsed());
            let action = plan(age, kept.refreshing);
            if action == Plan::ServeAndRefresh {
                kept.refreshing = true;
            }
            (kept.stats.as_ref().map(|(_, s)| s.clone()), action)
        };
        match (action, kept) {
            (Plan::Serve, Some(stats)) => Ok(stats),
            (Plan::ServeAndRefresh, Some(stats)) => {
                let (this, transport) = (self.clone(), transport.clone());
                tokio::spawn(async move {
                    // A failed refresh leaves the kept ones to age out; the next request that
                    // finds them too old counts itself and reports the error.
                    let _ = this.count(&transport).await;
                    this.lock().refreshing = false;
                });
                Ok(stats)
            }
            _ => self.count(&transport.clone()).await,
        }
    }

    /// Forget the kept statistics (an action changed them).
    pub fn invalidate(&self) {
        self.lock().stats = None;
    }

    async fn count(&self, transport: &Arc<dyn Transport>) -> Result<Arc<Vec<QueueStats>>> {
        let _counting = self.counting.lock().await;
        // Someone else may have counted while this one waited.
        if let Some((at, stats)) = &self.lock().stats
            && at.elapsed() < FRESH
        {
            return Ok(stats.clone());
        }
        let started = Instant::now();
        let stats = Arc::new(transport.stats().await?);
        let took = started.elapsed();
        self.lock().stats = (took >= CHEAP).then(|| (Instant::now(), stats.clone()));
        Ok(stats)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_age_of_what_is_kept() {
        assert_eq!(plan(None, false), Plan::Count);
        assert_eq!(plan(Some(Duration::ZERO), false), Plan::Serve);
        assert_eq!(plan(Some(FRESH), false), Plan::ServeAndRefresh);
        assert_eq!(plan(Some(FRESH), true), Plan::Serve);
        assert_eq!(plan(Some(STALE), true), Plan::Count);
    }

    #[tokio::test]
    async fn cheap_counts_are_never_kept() {
        let transport: Arc<dyn Transport> =
            Arc::new(rex_transport::memory::MemoryTransport::default());
        let snapshot = Arc::new(Snapshot::default());
        assert!(snapshot.stats(&transport).await.unwrap().is_empty());
        transport
            .submit("foo", rex_transport::Payload::new(), &Default::default())
            .await
            .unwrap();
        let stats = snapshot.stats(&transport).await.unwrap();
        assert_eq!(stats.len(), 1, "a cheap count is done again: {stats:?}");
    }
}
