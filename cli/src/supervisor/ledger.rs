//! The master's transport ledger: every transport call the master makes, run off its loop.
//!
//! The master's loop must answer signals, child deaths and timeouts at once, but a transport
//! call can take long: SQLite waits up to its busy timeout for a lock held by another process
//! (and runs on the calling thread), a network broker may not answer at all. So the loop never
//! awaits one. It hands each operation to the ledger, which runs it on a thread of its own (a
//! current-thread runtime: a blocking SQLite call stalls only this thread), logs its outcome,
//! and reports back what the loop needs to know ([`Report`]) through a channel the loop
//! selects on.
//!
//! Periodic operations (renewals, reclaiming expired leases, upkeep) never pile up: a new one
//! is skipped while the previous one still runs. Settlements of dead children's tasks are all
//! kept, and [`Ledger::finish`] waits for them before the master exits, so nothing is left
//! behind when a lock merely delayed them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{Failure, Lease, Settlement, Task, Transport};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::logging::Logger;
use crate::outage::Outage;
use crate::settings::RetryPolicy;

/// What the loop learns back from the ledger.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// The tasks of the child of `slot` started as `generation`, which died, were settled.
    Settled {
        slot: usize,
        generation: u64,
        tasks: usize,
    },
}

/// Which slot's child (by generation) a settlement belongs to.
#[derive(Clone, Copy, Debug)]
pub struct ChildRef {
    pub slot: usize,
    pub generation: u64,
}

pub struct Ledger {
    transport: Arc<dyn Transport>,
    log: Logger,
    handle: tokio::runtime::Handle,
    reports: mpsc::UnboundedSender<Report>,
    /// Settlements and releases: the master waits for these before it exits.
    owed: Vec<JoinHandle<()>>,
    renewing: Option<JoinHandle<()>>,
    reclaiming: Option<JoinHandle<()>>,
    maintaining: Option<JoinHandle<()>>,
    /// Ends the thread (dropped with the ledger).
    stop: Option<oneshot::Sender<()>>,
    /// The outage the lease upkeep sees, if any: logged once, then at a bounded rate.
    outage: Arc<std::sync::Mutex<Outage>>,
}

impl Ledger {
    /// Start the ledger's thread. Reports arrive on the returned receiver.
    pub fn start(
        transport: Arc<dyn Transport>,
        log: Logger,
    ) -> std::io::Result<(Ledger, mpsc::UnboundedReceiver<Report>)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        // Detached: at exit the master does not wait for a call blocked in the transport (a
        // SQLite busy timeout); `finish` is where it waits, for as long as it chooses to.
        std::thread::Builder::new()
            .name("rex-ledger".into())
            .spawn(move || {
                // Spawned operations run while this waits; dropping the runtime afterwards
                // cancels whatever the master chose not to wait for.
                let _ = runtime.block_on(stopped);
            })?;
        let (reports, receiver) = mpsc::unbounded_channel();
        Ok((
            Ledger {
                transport,
                log,
                handle,
                reports,
                owed: Vec::new(),
                renewing: None,
                reclaiming: None,
                maintaining: None,
                stop: Some(stop),
                outage: Arc::new(std::sync::Mutex::new(Outage::on_timers())),
            },
            receiver,
        ))
    }

    /// Run any future on the ledger's thread (the `--scheduler` producer lives here too: its
    /// submits are transport calls).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Settle the tasks leased to a dead child, as its beacon told: the one it was running
    /// (`charged`) with `failure` (a crash, or a cancellation) by the retry policy of its
    /// queue; those it had `completed` but
    /// not recorded, completed; the others (claimed and not started, or finished with an
    /// outcome the beacon could not carry) go back to pending uncharged. Then report how many
    /// were charged.
    pub fn settle_crash(
        &mut self,
        child: ChildRef,
        owner: String,
        charged: Option<Lease>,
        completed: Vec<Lease>,
        failure: Failure,
        policies: HashMap<String, RetryPolicy>,
    ) {
        let (transport, log, reports) = self.parts();
        let job = self.handle.spawn(async move {
            let beacon = Beacon { charged, completed };
            let tasks = settle_crash(&*transport, &log, &owner, &beacon, &failure, &policies).await;
            let _ = reports.send(Report::Settled {
                slot: child.slot,
                generation: child.generation,
                tasks,
            });
        });
        self.owe(job);
    }

    /// Give the tasks of a child killed at shutdown back, untouched, for another worker;
    /// those its beacon listed as `completed` are completed.
    pub fn release_all(&mut self, owner: String, completed: Vec<Lease>, reason: &'static str) {
        let (transport, log, _) = self.parts();
        let job = self.handle.spawn(async move {
            release_all(&*transport, &log, &owner, &completed, reason).await;
        });
        self.owe(job);
    }

    /// Extend the leases of the live children's tasks (skipped while the last renewal runs).
    pub fn renew(&mut self, owners: Vec<String>, lease: Duration) {
        if owners.is_empty() || running(&self.renewing) {
            return;
        }
        let (transport, log, _) = self.parts();
        let outage = self.outage.clone();
        self.renewing = Some(self.handle.spawn(async move {
            let result = transport.renew(&owners, lease).await;
            upkeep_outcome(&outage, &log, "cannot renew task leases", result.err());
        }));
    }

    /// Leases that expired belong to a master (or host) that died: their tasks go back to
    /// pending (skipped while the last look still runs).
    pub fn reclaim_expired(&mut self) {
        if running(&self.reclaiming) {
            return;
        }
        let (transport, log, _) = self.parts();
        let outage = self.outage.clone();
        self.reclaiming = Some(self.handle.spawn(async move {
            match transport.expired(SystemTime::now()).await {
                Ok(tasks) => {
                    upkeep_outcome(&outage, &log, "", None);
                    for task in tasks {
                        let reason = format!("lease expired (owner {})", task.owner);
                        reclaim(&*transport, &log, &task, &reason).await;
                    }
                }
                Err(e) => upkeep_outcome(&outage, &log, "cannot look for expired leases", Some(e)),
            }
        }));
    }

    /// At start: besides expired leases, tasks held by a dead master on this host (its pid is
    /// gone or belongs to another process now) are reclaimed at once.
    pub fn reclaim_orphans(&mut self, owner_prefix: String) {
        let (transport, log, _) = self.parts();
        self.reclaiming = Some(self.handle.spawn(async move {
            let far_future = SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600);
            let Ok(running) = transport.expired(far_future).await else {
                return;
            };
            for task in running {
                if orphaned_here(&task.owner, &owner_prefix)
                    || task.lease_until <= SystemTime::now()
                {
                    let reason = format!("its master died (owner {})", task.owner);
                    reclaim(&*transport, &log, &task, &reason).await;
                }
            }
        }));
    }

    /// The transport's upkeep (a vacuum may take a while) and the pruning of completed tasks
    /// kept longer than `retention` (a duration, a count per queue), one at a time.
    pub fn maintain(&mut self, retention: (Duration, u64)) {
        if running(&self.maintaining) {
            return;
        }
        let (transport, log, _) = self.parts();
        self.maintaining = Some(self.handle.spawn(async move {
            let (kept_for, kept) = retention;
            let before = SystemTime::now()
                .checked_sub(kept_for)
                .unwrap_or(std::time::UNIX_EPOCH);
            match transport.prune_completed(before, kept).await {
                Ok(0) => {}
                Ok(n) => log.debug(format_args!("Pruned {n} completed tasks")),
                Err(e) if e.is_retryable() => {}
                Err(e) => log.warn(format_args!("Pruning completed tasks failed: {e}")),
            }
            match transport.maintain().await {
                Ok(Some(done)) => log.debug(format_args!("{done}")),
                Ok(None) => {}
                // An outage is reported by the operations that need the server.
                Err(e) if e.is_retryable() => {}
                Err(e) => log.warn(format_args!("Transport maintenance failed: {e}")),
            }
        }));
    }

    /// Settlements and releases not done yet.
    pub fn owed(&self) -> usize {
        self.owed.iter().filter(|job| !job.is_finished()).count()
    }

    /// Wait for every settlement and release, unless `interrupted` resolves first (then their
    /// leases expire and another master reclaims the tasks).
    pub async fn finish(&mut self, interrupted: impl Future<Output = ()>) {
        let owed = &mut self.owed;
        let all = async {
            for job in owed.iter_mut() {
                let _ = job.await;
            }
        };
        let completed = tokio::select! {
            // What is done counts as done, even when the signal came too.
            biased;
            _ = all => true,
            _ = interrupted => false,
        };
        if !completed {
            self.log.warn(format_args!(
                "Exiting before {} transport operation(s) completed; their tasks' leases will expire",
                self.owed()
            ));
        }
    }

    fn parts(&self) -> (Arc<dyn Transport>, Logger, mpsc::UnboundedSender<Report>) {
        (
            Arc::clone(&self.transport),
            self.log.clone(),
            self.reports.clone(),
        )
    }

    /// Keep `job` (spawned on this thread) among what [`finish`](Ledger::finish) waits for.
    pub fn owe(&mut self, job: JoinHandle<()>) {
        self.owed.retain(|job| !job.is_finished());
        self.owed.push(job);
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Record how a lease-upkeep job went: a failure (`what` failed with `error`) is part of an
/// outage, logged once and then at a bounded rate; a success ends it. The jobs run on their
/// own timers, so the outage's backoff is not used here.
fn upkeep_outcome(
    outage: &std::sync::Mutex<Outage>,
    log: &Logger,
    what: &str,
    error: Option<rex_transport::TransportError>,
) {
    let mut outage = outage
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match error {
        Some(e) => {
            outage.failed_now(log, &format!("{what}: {e}"));
        }
        None => outage.recovered_now(log),
    }
}

fn running(job: &Option<JoinHandle<()>>) -> bool {
    job.as_ref().is_some_and(|job| !job.is_finished())
}

/// Whether `owner` (`host:pid:start:generation`) names a master on this host that is gone:
/// its pid is not ours and no longer runs the process that started at `start`.
fn orphaned_here(owner: &str, owner_prefix: &str) -> bool {
    let host = owner_prefix.split(':').next().unwrap_or("");
    match owner.split(':').collect::<Vec<_>>().as_slice() {
        [h, pid, start, _generation] if *h == host => {
            let pid: u32 = pid.parse().unwrap_or(0);
            let start: u64 = start.parse().unwrap_or(0);
            pid != std::process::id() && super::child::process_start_time(pid) != Some(start)
        }
        _ => false,
    }
}

/// What a dead child's beacon said about the tasks it held.
struct Beacon {
    charged: Option<Lease>,
    completed: Vec<Lease>,
}

/// Settle the tasks leased to a dead owner: the charged one as a crash, the completed ones
/// completed, the others released without using an attempt. Returns how many were charged
/// (0 or 1).
async fn settle_crash(
    transport: &dyn Transport,
    log: &Logger,
    owner: &str,
    beacon: &Beacon,
    failure: &Failure,
    policies: &HashMap<String, RetryPolicy>,
) -> usize {
    let reason = &failure.reason;
    let tasks = match transport.owned_by(owner).await {
        Ok(tasks) => tasks,
        Err(e) => {
            log.error(format_args!(
                "Cannot settle the tasks of a dead worker ({e}); their leases will expire"
            ));
            return 0;
        }
    };
    let (running, others): (Vec<Task>, Vec<Task>) = tasks
        .into_iter()
        .partition(|task| Some(task.lease()) == beacon.charged);
    for task in &running {
        // Queues no longer configured (a reload removed them) get the default policy.
        let policy = policies.get(&task.queue).copied().unwrap_or_default();
        let retry_at = policy.retry_at(task, failure.kind);
        match transport.fail(&task.lease(), failure, retry_at).await {
            Ok(_) if retry_at.is_some() => log.info(format_args!(
                "Task {} on queue {} will be retried ({reason})",
                task.id, task.queue
            )),
            Ok(_) => {}
            Err(e) => log.error(format_args!(
                "Cannot settle task {}: {e}; its lease will expire",
                task.id
            )),
        }
    }
    if !others.is_empty() {
        let why = format!("its worker died ({reason}) while not running it");
        let batch: Vec<Settlement> = others
            .iter()
            .map(|task| {
                let lease = task.lease();
                if beacon.completed.contains(&lease) {
                    Settlement::Complete {
                        lease,
                        submits: Vec::new(),
                        result: None,
                    }
                } else {
                    Settlement::Release {
                        lease,
                        reason: why.clone(),
                    }
                }
            })
            .collect();
        match transport.settle(&batch).await {
            Ok(applied) => {
                let count = |complete: bool| {
                    batch
                        .iter()
                        .zip(&applied)
                        .filter(|(s, a)| {
                            **a && matches!(s, Settlement::Complete { .. }) == complete
                        })
                        .count()
                };
                let (completed, released) = (count(true), count(false));
                if completed > 0 {
                    log.info(format_args!(
                        "Recorded {completed} task(s) that the dead worker had completed"
                    ));
                }
                if released > 0 {
                    log.info(format_args!(
                        "Released {released} task(s) that the dead worker held but was not running"
                    ));
                }
            }
            Err(e) => log.error(format_args!(
                "Cannot settle the tasks a dead worker held ({e}); their leases will expire"
            )),
        }
    }
    running.len()
}

async fn release_all(
    transport: &dyn Transport,
    log: &Logger,
    owner: &str,
    completed: &[Lease],
    reason: &str,
) {
    match transport.owned_by(owner).await {
        Ok(tasks) => {
            for task in tasks {
                let lease = task.lease();
                let settled = if completed.contains(&lease) {
                    transport.complete(&lease, &[]).await
                } else {
                    transport.release(&lease, reason).await
                };
                match settled {
                    Err(e) => log.error(format_args!(
                        "Cannot release task {}: {e}; its lease will expire",
                        task.id
                    )),
                    Ok(_) if completed.contains(&lease) => {}
                    Ok(_) => log.info(format_args!(
                        "Released task {} of queue {} ({reason})",
                        task.id, task.queue
                    )),
                }
            }
        }
        Err(e) => log.error(format_args!(
            "Cannot release the tasks of a killed worker ({e}); their leases will expire"
        )),
    }
}

/// A task whose master (or host) died goes back to pending without using an attempt: the
/// death is not attributable to the task. (A child's death is, and is settled at once by its
/// own master.)
async fn reclaim(transport: &dyn Transport, log: &Logger, task: &Task, reason: &str) {
    match transport.release(&task.lease(), reason).await {
        Ok(true) => log.warn(format_args!(
            "Reclaimed task {} of queue {}: {reason}; it is pending again",
            task.id, task.queue
        )),
        Ok(false) => {}
        Err(e) => log.warn(format_args!("Cannot reclaim task {}: {e}", task.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rex_transport::memory::MemoryTransport;
    use rex_transport::{Payload, SubmitOptions};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A fresh in-process transport with one task of `jobs` claimed by `owner`.
    async fn with_task_claimed_by(owner: &str) -> (Arc<dyn Transport>, Task) {
        let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
        transport
            .submit("jobs", Payload::default(), &SubmitOptions::default())
            .await
            .expect("submit");
        let task = transport
            .claim("jobs", owner, Duration::from_secs(60))
            .await
            .expect("claim")
            .expect("a task");
        (transport, task)
    }

    #[test]
    fn a_dead_childs_task_is_settled_off_the_loop_and_reported() {
        let rt = runtime();
        rt.block_on(async {
            let (transport, task) = with_task_claimed_by("dead").await;
            let (mut ledger, mut reports) =
                Ledger::start(Arc::clone(&transport), Logger::new("test")).expect("ledger");
            let child = ChildRef {
                slot: 2,
                generation: 7,
            };
            ledger.settle_crash(
                child,
                "dead".into(),
                Some(task.lease()),
                Vec::new(),
                Failure::crash("killed by SIGKILL"),
                HashMap::new(),
            );
            assert_eq!(
                reports.recv().await,
                Some(Report::Settled {
                    slot: 2,
                    generation: 7,
                    tasks: 1
                })
            );
            ledger.finish(std::future::pending()).await;
            let failed = transport.failed(Some("jobs")).await.expect("failed");
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].id, task.id);
            assert_eq!(failed[0].last_error.as_deref(), Some("killed by SIGKILL"));
        });
    }

    #[test]
    fn finish_waits_for_releases_unless_interrupted() {
        let rt = runtime();
        rt.block_on(async {
            let (transport, _task) = with_task_claimed_by("killed").await;
            let (mut ledger, _reports) =
                Ledger::start(Arc::clone(&transport), Logger::new("test")).expect("ledger");
            ledger.release_all("killed".into(), Vec::new(), "worker killed at shutdown");
            ledger.finish(std::future::pending()).await;
            assert_eq!(transport.counts("jobs").await.expect("counts").ready, 1);

            // An operation that never completes (a transport that does not answer): a signal
            // ends the wait, and the operation is still owed.
            let stuck = ledger.spawn(std::future::pending::<()>());
            ledger.owe(stuck);
            ledger.finish(std::future::ready(())).await;
            assert_eq!(ledger.owed(), 1);
        });
    }

    #[test]
    fn orphans_are_masters_of_this_host_that_are_gone() {
        let me = std::process::id();
        let start = super::super::child::process_start_time(me).expect("own start time");
        let prefix = format!("host:{me}:{start}");
        // Our own children are not orphans; another host's owners are never judged here.
        assert!(!orphaned_here(&format!("host:{me}:{start}:3"), &prefix));
        assert!(!orphaned_here("elsewhere:1:1:1", &prefix));
        // A pid that runs no process (or another process than the one recorded) is gone.
        assert!(orphaned_here("host:999999999:1:1", &prefix));
        assert!(orphaned_here(&format!("host:1:{}:1", u64::MAX), &prefix));
    }
}
