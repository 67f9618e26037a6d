//! The master's heartbeat: every [`BEAT_INTERVAL`] it publishes a [`MasterRecord`] about itself
//! and its children through [`Transport::beat`](rex_transport::Transport::beat), valid for
//! [`BEAT_LIFETIME`]; `asynctask-masters` and the console list the records that have not
//! expired. A clean exit withdraws the record at once.
//!
//! The loop only builds the record (from its slots and the children's beacons: no I/O but a
//! read of `/proc/PID/statm`); the call itself runs on the ledger's thread, like every
//! transport call of the master. A beat is skipped while the previous one still runs. A
//! transport that cannot keep heartbeats (`Unsupported`) is told so once, at debug level, and
//! not asked again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rex_transport::{ChildRecord, MasterRecord, Transport, TransportError};
use tokio::task::JoinHandle;

use super::Supervisor;
use super::ledger::Ledger;
use super::slots::State;
use crate::logging::Logger;

/// How often a master publishes its record.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(2);

/// How long a record stays listed without a newer one: three beats.
pub const BEAT_LIFETIME: Duration = Duration::from_secs(6);

/// How long a clean exit waits to withdraw its record (it expires anyway).
const FORGET_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Heartbeat {
    started_at: SystemTime,
    /// The last beat's call, while it runs.
    beating: Option<JoinHandle<()>>,
    /// Set once the transport said it cannot keep heartbeats.
    unsupported: Arc<AtomicBool>,
}

impl Heartbeat {
    pub(super) fn new() -> Heartbeat {
        Heartbeat {
            started_at: SystemTime::now(),
            beating: None,
            unsupported: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Publish `record` on the ledger's thread, unless the last beat still runs or the
    /// transport cannot keep heartbeats.
    fn publish(&mut self, ledger: &Ledger, transport: Arc<dyn Transport>, record: MasterRecord) {
        if self.unsupported.load(Ordering::Relaxed)
            || self.beating.as_ref().is_some_and(|job| !job.is_finished())
        {
            return;
        }
        let unsupported = Arc::clone(&self.unsupported);
        let log = Logger::new(super::MASTER);
        self.beating = Some(ledger.spawn(async move {
            match transport.beat(&record).await {
                Ok(()) => {}
                Err(TransportError::Unsupported(why)) => {
                    unsupported.store(true, Ordering::Relaxed);
                    log.debug(format_args!("Not publishing heartbeats: {why}"));
                }
                // An outage is reported by the operations that need the server.
                Err(e) => log.debug(format_args!("Cannot publish the heartbeat: {e}")),
            }
        }));
    }

    /// At a clean exit: stop beating and withdraw the record (bounded; it expires anyway).
    /// Returns the job to wait for, if any.
    pub(super) fn forget(
        &mut self,
        ledger: &Ledger,
        transport: Arc<dyn Transport>,
        id: String,
    ) -> Option<JoinHandle<()>> {
        let beating = self.beating.take();
        if self.unsupported.load(Ordering::Relaxed) {
            return None;
        }
        let log = Logger::new(super::MASTER);
        Some(ledger.spawn(async move {
            // A beat still on its way would publish the record again after the withdrawal.
            if let Some(beating) = beating {
                beating.abort();
                let _ = beating.await;
            }
            match tokio::time::timeout(FORGET_TIMEOUT, transport.forget_master(&id)).await {
                Ok(Ok(())) | Ok(Err(TransportError::Unsupported(_))) => {}
                Ok(Err(e)) => log.debug(format_args!("Cannot withdraw the heartbeat: {e}")),
                Err(_) => log.debug(format_args!("Withdrawing the heartbeat timed out")),
            }
        }))
    }
}

impl Supervisor {
    /// The timer's tick: count what the children did since the last tick, publish what the
    /// master and its children look like now, and record the throughput history when due.
    pub(super) fn beat(&mut self) {
        let now = SystemTime::now();
        for index in 0..self.slots.len() {
            self.count_throughput(index, now);
        }
        let record = self.master_record(now);
        let transport = Arc::clone(&self.transport);
        self.heartbeat.publish(&self.ledger, transport, record);
        // Not waited for: the next beat acts on what this read finds.
        drop(self.act_on_cancels());
        // Not waited for: the next recording retries what this one could not record.
        drop(self.throughput.record(&self.ledger, &self.transport, false));
    }

    /// Add what slot `index`'s live child tallied since the last look.
    pub(super) fn count_throughput(&mut self, index: usize, now: SystemTime) {
        let slot = &mut self.slots[index];
        let State::Running(child) = &slot.state else {
            return;
        };
        let tallied = child.counters();
        let grown = tallied.since(&slot.counted);
        slot.counted = tallied;
        self.throughput.add(&slot.config.queue, &grown, now);
    }

    pub(super) fn master_record(&self, now: SystemTime) -> MasterRecord {
        let mut slot_of_queue: std::collections::HashMap<&str, u32> = Default::default();
        let children = self
            .slots
            .iter()
            .map(|slot| {
                let index = slot_of_queue.entry(&slot.config.queue).or_insert(0);
                let mut record = ChildRecord {
                    queue: slot.config.queue.clone(),
                    slot: *index,
                    processed: slot.processed,
                    restarts: slot.deaths,
                    ..ChildRecord::default()
                };
                *index += 1;
                if let State::Running(child) = &slot.state {
                    let beacon = child.snapshot();
                    record.pid = Some(child.pid);
                    record.processed += beacon.finished;
                    if let Some(running) = beacon.running {
                        record.task = Some(running.task);
                        record.task_since = now.checked_sub(running.started.elapsed());
                    }
                    record.rss_bytes = rss_bytes(child.pid);
                }
                record
            })
            .collect();
        MasterRecord {
            id: self.owner_prefix.clone(),
            host: self
                .owner_prefix
                .split(':')
                .next()
                .unwrap_or("")
                .to_string(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.heartbeat.started_at,
            beat_at: now,
            expires_at: now + BEAT_LIFETIME,
            scheduler: self.scheduler.is_some(),
            children,
            totals: self.throughput.totals(),
        }
    }

    /// At a clean exit: record the last of the throughput history and withdraw this
    /// master's record (waited for with the other owed operations).
    pub(super) fn forget_heartbeat(&mut self) {
        if let Some(job) = self.throughput.record(&self.ledger, &self.transport, true) {
            self.ledger.owe(job);
        }
        let transport = Arc::clone(&self.transport);
        let id = self.owner_prefix.clone();
        if let Some(job) = self.heartbeat.forget(&self.ledger, transport, id) {
            self.ledger.owe(job);
        }
    }
}

/// Resident memory of process `pid`: the second field of `/proc/PID/statm`, in pages.
fn rss_bytes(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).unwrap_or(4096)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_memory_of_this_process_is_read_from_proc() {
        let rss = rss_bytes(std::process::id()).expect("our own statm");
        assert!(rss > 0);
        assert_eq!(rss_bytes(0), None);
    }
}
