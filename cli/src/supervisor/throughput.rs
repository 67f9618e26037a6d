//! What the master's children did, counted for the console: the outcomes, run times and waits
//! the children tally on their beacons, plus the crashes the master charges itself.
//!
//! At every beat the master looks at each live child's beacon and adds what grew since its
//! last look (and at a child's death, what its beacon says last) to two places:
//!
//! * the totals per queue since the master started, published in its heartbeat
//!   ([`MasterRecord::totals`](rex_transport::MasterRecord)): the console's counters and
//!   histograms in `/metrics`;
//! * per-minute rows not yet recorded, which every
//!   [`history_interval`](rex_transport::Transport::history_interval) go to the transport
//!   ([`record_history`](rex_transport::Transport::record_history)) on the ledger's thread,
//!   where masters' rows add up: the console's charts and history.
//!
//! Each recording has a name of its own. One that fails is made again, under the same name
//! and before newer rows: it may have been applied before its reply was lost, and the
//! transport adds a name once. Rows older than the history keeps are dropped, so an outage of
//! any length costs bounded memory. A transport that keeps no history (`Unsupported`) is not
//! asked again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use rex_transport::history::{self, HISTORY_KEPT, minute_of};
use rex_transport::{Counters, HistoryRow, QueueTotals, Transport, TransportError};
use tokio::task::JoinHandle;

use super::ledger::Ledger;
use crate::logging::Logger;

/// A recording's name and rows.
type Recording = (String, Vec<HistoryRow>);

pub(super) struct Throughput {
    /// Per queue, since the master started.
    totals: BTreeMap<String, Counters>,
    /// Per queue and minute, not recorded yet (sorted as [`history::merge`] keeps them).
    unrecorded: Vec<HistoryRow>,
    /// Recordings that failed, to be made again as they were.
    returned: Arc<Mutex<Vec<Recording>>>,
    /// This master's recordings are named `<this>:<n>`: unique across masters and restarts.
    name: String,
    recordings: u64,
    /// Set while a recording runs.
    recording: Arc<AtomicBool>,
    last_recorded: Instant,
    unsupported: Arc<AtomicBool>,
}

impl Throughput {
    pub(super) fn new() -> Throughput {
        Throughput {
            totals: BTreeMap::new(),
            unrecorded: Vec::new(),
            returned: Arc::default(),
            name: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            recordings: 0,
            recording: Arc::new(AtomicBool::new(false)),
            last_recorded: Instant::now(),
            unsupported: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Count `counters` for `queue`, in the minute of `now`.
    pub(super) fn add(&mut self, queue: &str, counters: &Counters, now: SystemTime) {
        if counters.is_empty() {
            return;
        }
        self.totals
            .entry(queue.to_string())
            .or_default()
            .add(counters);
        if !self.unsupported.load(Ordering::Relaxed) {
            history::merge(
                &mut self.unrecorded,
                [HistoryRow {
                    queue: queue.to_string(),
                    minute: minute_of(now),
                    counters: *counters,
                }],
            );
        }
    }

    /// The totals per queue since the master started, for its heartbeat.
    pub(super) fn totals(&self) -> Vec<QueueTotals> {
        self.totals
            .iter()
            .map(|(queue, counters)| QueueTotals {
                queue: queue.clone(),
                counters: *counters,
            })
            .collect()
    }

    /// Record the unrecorded rows on the ledger's thread, when the transport's interval has
    /// passed since the last recording (or at once with `now`), unless a recording still
    /// runs or there is nothing to record. Returns the job.
    pub(super) fn record(
        &mut self,
        ledger: &Ledger,
        transport: &Arc<dyn Transport>,
        now: bool,
    ) -> Option<JoinHandle<()>> {
        // At exit (`now`) a recording still running does not hold the last rows back: the
        // two add up in the transport.
        let due = self.last_recorded.elapsed() >= transport.history_interval()
            && !self.recording.load(Ordering::Acquire);
        if !(now || due) {
            return None;
        }
        let oldest = minute_of(SystemTime::now() - HISTORY_KEPT);
        let mut recordings = std::mem::take(&mut *lock(&self.returned));
        for (_, rows) in &mut recordings {
            rows.retain(|row| row.minute >= oldest);
        }
        recordings.retain(|(_, rows)| !rows.is_empty());
        self.unrecorded.retain(|row| row.minute >= oldest);
        if self.unsupported.load(Ordering::Relaxed) {
            self.unrecorded.clear();
            return None;
        }
        if !self.unrecorded.is_empty() {
            self.recordings += 1;
            let name = format!("{}:{}", self.name, self.recordings);
            recordings.push((name, std::mem::take(&mut self.unrecorded)));
        }
        if recordings.is_empty() {
            return None;
        }
        self.last_recorded = Instant::now();
        let (transport, returned) = (Arc::clone(transport), Arc::clone(&self.returned));
        let unsupported = Arc::clone(&self.unsupported);
        let recording = Arc::clone(&self.recording);
        recording.store(true, Ordering::Release);
        let log = Logger::new(super::MASTER);
        Some(ledger.spawn(async move {
            // In order: a repeated recording goes before newer rows.
            for (name, rows) in recordings {
                match transport.record_history(&name, &rows).await {
                    Ok(()) => {}
                    Err(TransportError::Unsupported(why)) => {
                        unsupported.store(true, Ordering::Relaxed);
                        log.debug(format_args!("Not recording throughput history: {why}"));
                        break;
                    }
                    Err(e) => {
                        log.debug(format_args!("Cannot record throughput history: {e}"));
                        lock(&returned).push((name, rows));
                    }
                }
            }
            recording.store(false, Ordering::Release);
        }))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
