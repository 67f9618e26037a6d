//! `rex asynctask-workers`: the master process.
//!
//! One child per configured queue (`concurrency: N` gives N), each a `rex-worker` process (or,
//! when that binary is not beside this one, a re-execution of this binary as `rex __worker`),
//! in its own process group, dying with the master (PDEATHSIG).
//! Supervision is event-driven: a monitor task per child reads its control socket until EOF and
//! then awaits its exit status (SIGCHLD-driven), so a death is handled the moment it happens:
//!
//! 1. the tasks leased to the dead child are settled by the retry policy, charged to the
//!    crash budget with the reason ([`DeathCause`]: `killed by SIGKILL`, `exited with status
//!    1`, `timeout after 5s`);
//! 2. the child is relaunched — at once the first time, with exponential backoff (capped at
//!    30 s) while a queue keeps dying without making progress.
//!
//! The master also renews the leases of its children's tasks (so a long, CPU-bound payload is
//! never mistaken for a dead one), reclaims expired leases of dead masters, enforces per-task
//! timeouts, and handles signals: SIGTERM/SIGINT warm shutdown with a grace period, a second
//! SIGINT or SIGQUIT cold shutdown, SIGUSR1 status, SIGHUP settings reload.
//!
//! # Files
//!
//! * this file — the loop: one `select!` over child events, ledger reports, signals and
//!   timers; launching a child.
//! * `slots` — a slot per child position, its state, timers (backoff, timeouts), status lines.
//! * `death` — [`DeathCause`] and what a death does to the slot and the child's tasks.
//! * `cancel` — stopping a child whose running task an operator cancelled.
//! * `heartbeat` — the record the master publishes about itself and its children every 2 s
//!   (`asynctask-masters`), through the ledger.
//! * `throughput` — what the children did (outcomes, run times, waits, crashes), added up per
//!   queue for the heartbeat's totals and per minute for the transport's history.
//! * `ledger` — every transport call of the master, run on a thread of its own: the loop
//!   never waits on I/O, so a locked database or a silent broker cannot stall it.
//! * `shutdown`, `reload` — SIGTERM/SIGINT/SIGQUIT and SIGHUP.
//! * `child` — spawning a child, its control socket, signalling its process group.
//! * `restart` — the relaunch backoff policy.
//! * `tests` — the loop's handlers driven with fake children (no processes).

mod cancel;
mod child;
mod death;
mod heartbeat;
mod ledger;
mod reload;
mod restart;
mod shutdown;
mod slots;
#[cfg(test)]
mod tests;
mod throughput;

use std::sync::Arc;
use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::Parsed;
use crate::control::{Up, WorkerSpec};
use crate::error::{Error, Result};
use crate::logging::{self, Logger};
use crate::project::{App, ProjectArgs, Requirement};
use child::{Event, Launcher, Processes};
pub use death::DeathCause;
use ledger::{Ledger, Report};
use rex_transport::{MAINTENANCE_INTERVAL, Transport};
use slots::{Slot, State, all_queues};

/// Exit status when shutdown had to kill children (their tasks were released).
pub const EXIT_KILLED_CHILDREN: i32 = 3;

const MASTER: &str = "AsyncTaskWorkerTask";

/// `rex asynctask-workers [<project>]`.
pub fn task(parsed: &Parsed) -> Result<i32> {
    let args = parsed.project_args();
    let options = Options {
        halt_when_empty: parsed.flag("halt-when-empty"),
        quiet: parsed.flag("quiet"),
        scheduler: parsed.flag("scheduler"),
    };
    let app = App::build(
        &args,
        Requirement {
            package: "rex.asynctask",
            fallback: None,
        },
    )?;
    let mut log = app.settings.log_config();
    log.quiet = options.quiet;
    logging::configure(log);
    let rt = crate::runtime::current_thread()?;
    rt.block_on(async move { Supervisor::new(app, args, options)?.run().await })
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub halt_when_empty: bool,
    pub quiet: bool,
    /// This master also enqueues the scheduled fires.
    pub scheduler: bool,
}

pub(crate) struct Supervisor {
    app: App,
    args: ProjectArgs,
    options: Options,
    log: Logger,
    transport: Arc<dyn Transport>,
    slots: Vec<Slot>,
    generation: u64,
    owner_prefix: String,
    events_tx: mpsc::UnboundedSender<Event>,
    launcher: Box<dyn Launcher>,
    events: mpsc::UnboundedReceiver<Event>,
    stopping: Option<Instant>,
    killed_children: bool,
    /// The `--scheduler` producer task.
    scheduler: Option<tokio::task::JoinHandle<()>>,
    /// Runs the master's transport calls off the loop; reports arrive on `reports`.
    ledger: Ledger,
    reports: mpsc::UnboundedReceiver<Report>,
    /// What the master publishes about itself (`asynctask-masters`).
    heartbeat: heartbeat::Heartbeat,
    /// What the children did, for the heartbeat and the throughput history.
    throughput: throughput::Throughput,
    /// Operators' cancellations of running tasks, as last read.
    cancels: cancel::Cancels,
}

impl Supervisor {
    fn new(app: App, args: ProjectArgs, options: Options) -> Result<Supervisor> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let pid = std::process::id();
        let owner_prefix = format!(
            "{host}:{pid}:{}",
            child::process_start_time(pid).unwrap_or(0)
        );
        let log = Logger::new(MASTER);
        let (program, note) = crate::worker::program()
            .map_err(|e| Error::new(format!("cannot find the rex executable: {e}")))?;
        if let Some(note) = note {
            log.warn(format_args!("{note}"));
        }
        let transport = app.open_transport()?;
        let (ledger, reports) = Ledger::start(Arc::clone(&transport), Logger::new(MASTER))
            .map_err(|e| Error::new(format!("cannot start the transport thread: {e}")))?;
        Ok(Supervisor {
            app,
            args,
            options,
            log,
            transport,
            slots: Vec::new(),
            generation: 0,
            owner_prefix,
            events_tx,
            launcher: Box::new(Processes(program)),
            events,
            stopping: None,
            killed_children: false,
            scheduler: None,
            ledger,
            reports,
            heartbeat: heartbeat::Heartbeat::new(),
            throughput: throughput::Throughput::new(),
            cancels: Default::default(),
        })
    }

    async fn run(mut self) -> Result<i32> {
        let queues = all_queues(&self.app.settings);
        if queues.is_empty() {
            self.log
                .info(format_args!("No workers configured; terminating."));
            return Ok(0);
        }
        if !self.transport.is_shared() {
            return Err(crate::project::not_shared(self.transport.as_ref()));
        }
        self.slots = self.slots_for(queues)?;
        self.ledger.reclaim_orphans(self.owner_prefix.clone());

        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigquit = signal(SignalKind::quit())?;
        let mut sigusr1 = signal(SignalKind::user_defined1())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let lease = self.app.settings.lease_duration();
        let mut heartbeat = tokio::time::interval(lease / 3);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(self.app.settings.check_child_interval());
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut upkeep = tokio::time::interval(MAINTENANCE_INTERVAL);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(heartbeat::BEAT_INTERVAL);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        for i in 0..self.slots.len() {
            self.launch(i);
        }
        if self.options.scheduler {
            self.start_scheduler();
        }
        loop {
            if self.slots.iter().all(|s| matches!(s.state, State::Done)) {
                break;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                // Events first: a child's report that is already queued is applied before a
                // signal or timer looks at the children.
                biased;
                Some(event) = self.events.recv() => self.on_event(event),
                Some(Report::Settled { slot, generation, tasks }) = self.reports.recv() =>
                    self.on_settled(ledger::ChildRef { slot, generation }, tasks),
                _ = sigterm.recv() => self.begin_shutdown(),
                _ = sigint.recv() => if self.stopping.is_some() { self.kill_all("second interrupt") } else { self.begin_shutdown() },
                _ = sigquit.recv() => { self.begin_shutdown(); self.kill_all("SIGQUIT"); }
                _ = sigusr1.recv() => self.report_status(),
                _ = sighup.recv() => self.reload(),
                _ = heartbeat.tick() => self.ledger.renew(self.live_owners(), lease),
                _ = housekeeping.tick() => self.ledger.reclaim_expired(),
                _ = upkeep.tick() => self.ledger.maintain(self.app.settings.completed_retention()),
                _ = beat.tick() => self.beat(),
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timers(),
            }
        }
        self.stop_scheduler();
        // Settlements still owed (a lock or an outage delayed them) are waited for; a
        // further SIGTERM or SIGINT gives up on them (their leases expire instead).
        let owed = self.ledger.owed();
        if owed > 0 {
            self.log.debug(format_args!(
                "Waiting for {owed} transport operation(s) to complete"
            ));
        }
        // Waited for with the settlements, but not counted among them in the log.
        self.forget_heartbeat();
        let interrupted = async {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
        };
        self.ledger.finish(interrupted).await;
        if self.stopping.is_some() {
            self.log.debug(format_args!("Children dead"));
        } else {
            self.log
                .info(format_args!("All workers halted; closing down..."));
        }
        self.log.info(format_args!("Complete"));
        Ok(if self.killed_children {
            EXIT_KILLED_CHILDREN
        } else {
            0
        })
    }

    fn launch(&mut self, index: usize) {
        self.generation += 1;
        let owner = format!("{}:{}", self.owner_prefix, self.generation);
        let slot = &self.slots[index];
        let halt_when_empty = self.options.halt_when_empty;
        let spec = match WorkerSpec::new(&self.app, &slot.config, owner, halt_when_empty) {
            Ok(mut spec) => {
                // Any child of the queue may get a lost task back, not only the dead one's
                // successor.
                let same_queue = || {
                    self.slots
                        .iter()
                        .filter(|s| s.config.queue == slot.config.queue)
                };
                spec.lost_reasons = same_queue().flat_map(|s| s.lost.iter().cloned()).collect();
                spec.lost_innocent = same_queue()
                    .flat_map(|s| s.innocent.iter().copied())
                    .collect();
                spec.lost_completed = same_queue()
                    .flat_map(|s| s.completed.iter().copied())
                    .collect();
                spec
            }
            Err(e) => {
                self.log.error(format_args!(
                    "Cannot start a worker for queue {}: {}",
                    slot.config.queue,
                    e.render()
                ));
                self.slots[index].state = State::Done;
                return;
            }
        };
        self.log.info(format_args!(
            "Launching {} to work on queue {}",
            spec.worker, spec.queue
        ));
        let generation = self.generation;
        match self
            .launcher
            .launch(index, generation, spec, self.events_tx.clone())
        {
            Ok(child) => {
                // A new child's beacon counts from zero.
                self.slots[index].counted = Default::default();
                self.slots[index].state = State::Running(child);
            }
            Err(e) => {
                self.log.error(format_args!(
                    "Cannot start a worker for queue {}: {e}",
                    self.slots[index].config.queue
                ));
                let delay = self.slots[index].restarts.on_death(false);
                self.slots[index].state = State::Backoff(Instant::now() + delay);
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let Some(slot) = self.slots.get_mut(event.slot) else {
            return;
        };
        let State::Running(child) = &mut slot.state else {
            return;
        };
        if child.generation != event.generation {
            return;
        }
        // What the child is running is on its beacon, not in messages: it claims and settles
        // in batches, and a message per task would wake this loop per task.
        match event.kind {
            child::EventKind::Up(Up::Halted { reason }) => child.halted = Some(reason),
            child::EventKind::Up(Up::Ready) => {}
            child::EventKind::Exited(cause) => self.on_exit(event.slot, cause),
        }
    }

    fn start_scheduler(&mut self) {
        let entries = self.app.settings.schedules().to_vec();
        if entries.is_empty() {
            self.log.info(format_args!(
                "No schedules configured -- not starting scheduler"
            ));
            return;
        }
        let scheduler =
            crate::scheduler::Scheduler::new(entries, self.transport.clone(), Logger::new(MASTER));
        self.scheduler = Some(self.ledger.spawn(scheduler.run()));
    }

    /// Stop enqueueing. A fire is one atomic submit, so stopping between awaits loses nothing.
    fn stop_scheduler(&mut self) {
        if let Some(handle) = self.scheduler.take() {
            self.log.debug(format_args!(
                "Termination received; shutting down scheduler"
            ));
            handle.abort();
            self.log.debug(format_args!("Scheduler dead"));
        }
    }
}
