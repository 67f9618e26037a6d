//! `rex asynctask-workers`: the master process.
//!
//! One child per configured queue (`concurrency: N` gives N), each a re-execution of this
//! binary as `rex __worker`, in its own process group, dying with the master (PDEATHSIG).
//! Supervision is event-driven: a monitor task per child reads its control socket until EOF and
//! then awaits its exit status (SIGCHLD-driven), so a death is handled the moment it happens:
//!
//! 1. the tasks leased to the dead child are settled at once by the retry policy, charged to
//!    the crash budget with the reason (`killed by SIGKILL`, `exited with status 1`, `timeout`);
//! 2. the child is relaunched — at once the first time, with exponential backoff (capped at
//!    30 s) while a queue keeps dying without making progress.
//!
//! The master also renews the leases of its children's tasks (so a long, CPU-bound payload is
//! never mistaken for a dead one), reclaims expired leases of dead masters, enforces per-task
//! timeouts, and handles signals: SIGTERM/SIGINT warm shutdown with a grace period, a second
//! SIGINT or SIGQUIT cold shutdown, SIGUSR1 status, SIGHUP settings reload.

mod child;
mod restart;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::Parsed;
use crate::control::{HaltReason, Up};
use crate::error::{Error, Result};
use crate::logging::{self, Logger};
use crate::project::{App, ProjectArgs, Requirement};
use crate::settings::{QueueConfig, RetryPolicy};
use child::{Child, Event, Exit};
use restart::Restarts;
use rex_transport::{Failure, FailureKind, MAINTENANCE_INTERVAL, Transport};

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
    let rt = crate::tasks::operator::runtime()?;
    rt.block_on(async move { Supervisor::new(app, args, options)?.run().await })
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub halt_when_empty: bool,
    pub quiet: bool,
    /// This master also enqueues the scheduled fires.
    pub scheduler: bool,
}

/// The configured queues, sorted by name, then the consumer queue of each schedule entry (a
/// queue already listed is not added twice).
fn all_queues(settings: &crate::settings::Settings) -> Vec<QueueConfig> {
    let mut queues = settings.queues();
    for entry in settings.schedules() {
        let config = entry.queue_config();
        if !queues.iter().any(|q| q.queue == config.queue) {
            queues.push(config);
        }
    }
    queues
}

/// One child position: a queue and an index below its concurrency.
struct Slot {
    config: QueueConfig,
    logger_name: String,
    plugin: Option<std::path::PathBuf>,
    state: State,
    restarts: Restarts,
    processed: u64,
    /// Set while the slot is being removed (reload): it is not relaunched.
    retiring: bool,
    /// Broker-held leases only: the last tasks this slot's children held when they died, with
    /// the reason, for the queue's next children (the broker gives such a task back to whoever
    /// claims it; a child started before the death gets the generic reason).
    lost: VecDeque<(i64, String)>,
}

/// How many lost tasks a slot remembers for its next children.
const LOST_REMEMBERED: usize = 16;

enum State {
    Running(Child),
    /// Waiting to be relaunched.
    Backoff(Instant),
    /// Stopped in order (halted when empty, quit on shutdown or reload).
    Done,
}

struct Supervisor {
    app: App,
    args: ProjectArgs,
    options: Options,
    log: Logger,
    transport: Arc<dyn Transport>,
    slots: Vec<Slot>,
    generation: u64,
    owner_prefix: String,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    stopping: Option<Instant>,
    killed_children: bool,
    /// The `--scheduler` producer task.
    scheduler: Option<tokio::task::JoinHandle<()>>,
    /// The transport's upkeep, when one is running.
    maintenance: Option<tokio::task::JoinHandle<()>>,
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
        let transport = app.open_transport()?;
        Ok(Supervisor {
            app,
            args,
            options,
            log: Logger::new(MASTER),
            transport,
            slots: Vec::new(),
            generation: 0,
            owner_prefix,
            events_tx,
            events,
            stopping: None,
            killed_children: false,
            scheduler: None,
            maintenance: None,
        })
    }

    fn slots_for(&self, queues: Vec<QueueConfig>) -> Result<Vec<Slot>> {
        let mut slots = Vec::new();
        for config in queues {
            let (package, decl) = self.app.worker(&config.worker).ok_or_else(|| {
                Error::new(format!("Worker \"{}\" does not exist", config.worker))
            })?;
            for _ in 0..config.concurrency.max(1) {
                slots.push(Slot {
                    config: config.clone(),
                    logger_name: decl.logger.clone(),
                    plugin: package.plugin_path().cloned(),
                    state: State::Backoff(Instant::now()),
                    restarts: Restarts::default(),
                    processed: 0,
                    retiring: false,
                    lost: VecDeque::new(),
                });
            }
        }
        Ok(slots)
    }

    async fn run(mut self) -> Result<i32> {
        let queues = all_queues(&self.app.settings);
        if queues.is_empty() {
            self.log
                .info(format_args!("No workers configured; terminating."));
            return Ok(0);
        }
        if !self.transport.is_shared() {
            return Err(Error::new(format!(
                "the {} transport keeps tasks inside one process, so worker processes cannot share it; use sqlite:PATH or a server transport",
                self.transport.describe()
            )));
        }
        self.slots = self.slots_for(queues)?;
        self.reclaim_orphans().await;

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
                Some(event) = self.events.recv() => self.on_event(event).await,
                _ = sigterm.recv() => self.begin_shutdown(),
                _ = sigint.recv() => if self.stopping.is_some() { self.kill_all("second interrupt") } else { self.begin_shutdown() },
                _ = sigquit.recv() => { self.begin_shutdown(); self.kill_all("SIGQUIT"); }
                _ = sigusr1.recv() => self.report_status(),
                _ = sighup.recv() => self.reload(),
                _ = heartbeat.tick() => self.renew_leases(lease).await,
                _ = housekeeping.tick() => self.reclaim_expired().await,
                _ = upkeep.tick() => self.maintain(),
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timers(),
            }
        }
        self.stop_scheduler();
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
        let spec = crate::control::WorkerSpec {
            queue: slot.config.queue.clone(),
            worker: slot.config.worker.clone(),
            logger: slot.logger_name.clone(),
            plugin: slot.plugin.clone(),
            settings: self.app.settings.to_json(),
            transport: self.app.transport_uri(),
            poll_interval_ms: self.app.settings.poll_interval().as_millis() as u64,
            halt_when_empty: self.options.halt_when_empty,
            owner,
            lease_ms: self.app.settings.lease_duration().as_millis() as u64,
            retry: slot.config.retry,
            rate: slot.config.rate,
            log: logging::current_config(),
            master_pid: std::process::id(),
            project_args: self.args.clone(),
            // Any child of the queue may get a lost task back, not only the dead one's successor.
            lost_reasons: self
                .slots
                .iter()
                .filter(|s| s.config.queue == slot.config.queue)
                .flat_map(|s| s.lost.iter().cloned())
                .collect(),
        };
        self.log.info(format_args!(
            "Launching {} to work on queue {}",
            spec.worker, spec.queue
        ));
        let generation = self.generation;
        match Child::spawn(index, generation, spec, self.events_tx.clone()) {
            Ok(child) => self.slots[index].state = State::Running(child),
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

    async fn on_event(&mut self, event: Event) {
        let Some(slot) = self.slots.get_mut(event.slot) else {
            return;
        };
        let State::Running(child) = &mut slot.state else {
            return;
        };
        if child.generation != event.generation {
            return;
        }
        match event.kind {
            // One message per task: a claim (or going idle) also means the previous task is
            // settled, which halves the wake-ups of this process per task.
            child::EventKind::Up(Up::Claimed { task, .. }) => {
                if child.current.replace((task, Instant::now())).is_some() {
                    child.processed += 1;
                    slot.processed += 1;
                }
            }
            child::EventKind::Up(Up::Idle) => {
                if child.current.take().is_some() {
                    child.processed += 1;
                    slot.processed += 1;
                }
            }
            child::EventKind::Up(Up::Halted { reason }) => child.halted = Some(reason),
            child::EventKind::Up(Up::Ready) => {}
            child::EventKind::Exited(exit) => self.on_exit(event.slot, exit).await,
        }
    }

    async fn on_exit(&mut self, index: usize, exit: Exit) {
        let State::Running(child) = std::mem::replace(&mut self.slots[index].state, State::Done)
        else {
            return;
        };
        let queue = self.slots[index].config.queue.clone();
        let orderly = child.halted.is_some() && child.kill_reason.is_none();
        if child.killed_by_shutdown {
            // Killed after the grace period: its tasks go back untouched for another worker.
            self.release_tasks(&child.owner, "worker killed at shutdown")
                .await;
            return;
        }
        if orderly {
            let reason = child.halted.unwrap_or(HaltReason::Quit);
            let done = self.stopping.is_some()
                || self.slots[index].retiring
                || (self.options.halt_when_empty && reason == HaltReason::Empty);
            if !done {
                // Stopped on its own (e.g. SIGTERM sent to the child directly): keep the queue worked.
                self.log.info(format_args!(
                    "Worker for queue {queue} stopped; restarting..."
                ));
                self.launch(index);
            }
            return;
        }
        let reason = child.kill_reason.clone().unwrap_or_else(|| exit.describe());
        let settled = self.settle_crash(&child.owner, &reason).await;
        if let Some((task, _)) = child.current
            && self.transport.leases_held_by_broker()
        {
            let lost = &mut self.slots[index].lost;
            if lost.len() == LOST_REMEMBERED {
                lost.pop_front();
            }
            lost.push_back((task, reason.clone()));
        }
        let held_task = settled > 0 || child.current.is_some();
        if self.stopping.is_some() || self.slots[index].retiring {
            self.log.error(format_args!(
                "Worker for queue {queue} died during shutdown ({reason})"
            ));
            return;
        }
        self.log
            .error(format_args!("Worker for queue {queue} died; restarting..."));
        let task_note = match child.current {
            Some((task, _)) => format!(" while processing task {task}"),
            None => String::new(),
        };
        self.log.debug(format_args!(
            "Worker for queue {queue} (pid {}) {reason}{task_note}",
            child.pid
        ));
        // A child that held a task, or ran long enough to be called healthy, resets the count.
        let made_progress =
            held_task || child.processed > 0 || child.started.elapsed() >= restart::HEALTHY_UPTIME;
        let delay = self.slots[index].restarts.on_death(made_progress);
        if delay.is_zero() {
            self.launch(index);
        } else {
            self.log.warn(format_args!(
                "Worker for queue {queue} keeps dying without processing anything ({} times in a row); next start in {:.1}s",
                self.slots[index].restarts.failures(),
                delay.as_secs_f64()
            ));
            self.slots[index].state = State::Backoff(Instant::now() + delay);
        }
    }

    /// The retry policy of the queue a task belongs to (defaults for queues no longer configured).
    fn policy_for(&self, queue: &str) -> RetryPolicy {
        self.slots
            .iter()
            .find(|s| s.config.queue == queue)
            .map(|s| s.config.retry)
            .unwrap_or_default()
    }

    /// Settle every task leased to a dead owner as a crash; returns how many there were.
    async fn settle_crash(&self, owner: &str, reason: &str) -> usize {
        let tasks = match self.transport.owned_by(owner).await {
            Ok(tasks) => tasks,
            Err(e) => {
                self.log.error(format_args!(
                    "Cannot settle the tasks of a dead worker ({e}); their leases will expire"
                ));
                return 0;
            }
        };
        for task in &tasks {
            let retry_at = self
                .policy_for(&task.queue)
                .retry_at(task, FailureKind::Crash);
            match self
                .transport
                .fail(&task.lease(), &Failure::crash(reason), retry_at)
                .await
            {
                Ok(_) if retry_at.is_some() => self.log.info(format_args!(
                    "Task {} on queue {} will be retried ({reason})",
                    task.id, task.queue
                )),
                Ok(_) => {}
                Err(e) => self.log.error(format_args!(
                    "Cannot settle task {}: {e}; its lease will expire",
                    task.id
                )),
            }
        }
        tasks.len()
    }

    async fn release_tasks(&self, owner: &str, reason: &str) {
        match self.transport.owned_by(owner).await {
            Ok(tasks) => {
                for task in tasks {
                    if let Err(e) = self.transport.release(&task.lease(), reason).await {
                        self.log.error(format_args!(
                            "Cannot release task {}: {e}; its lease will expire",
                            task.id
                        ));
                    } else {
                        self.log.info(format_args!(
                            "Released task {} of queue {} ({reason})",
                            task.id, task.queue
                        ));
                    }
                }
            }
            Err(e) => self.log.error(format_args!(
                "Cannot release the tasks of a killed worker ({e}); their leases will expire"
            )),
        }
    }

    fn start_scheduler(&mut self) {
        let entries = self.app.settings.schedules();
        if entries.is_empty() {
            self.log.info(format_args!(
                "No schedules configured -- not starting scheduler"
            ));
            return;
        }
        let scheduler =
            crate::scheduler::Scheduler::new(entries, self.transport.clone(), Logger::new(MASTER));
        self.scheduler = Some(tokio::spawn(scheduler.run()));
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

    fn begin_shutdown(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.stop_scheduler();
        self.log
            .debug(format_args!("Termination received; shutting down children"));
        let grace = self.app.settings.shutdown_grace();
        self.stopping = Some(Instant::now() + grace);
        for slot in &mut self.slots {
            match &mut slot.state {
                State::Running(child) => child.quit(),
                State::Backoff(_) => slot.state = State::Done,
                State::Done => {}
            }
        }
    }

    /// Cold shutdown (or grace expiry): SIGKILL every remaining child's process group.
    fn kill_all(&mut self, why: &str) {
        let mut n = 0;
        for slot in &mut self.slots {
            if let State::Running(child) = &mut slot.state {
                child.kill();
                child.killed_by_shutdown = true;
                n += 1;
            }
        }
        if n > 0 {
            self.killed_children = true;
            self.log.warn(format_args!(
                "Killing {n} worker{} ({why}); their tasks are released",
                if n == 1 { "" } else { "s" }
            ));
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut next = Instant::now() + Duration::from_secs(3600);
        for slot in &self.slots {
            match &slot.state {
                State::Backoff(at) => next = next.min(*at),
                State::Running(child) => {
                    if let (Some(timeout), Some((_, started)), None) =
                        (slot.config.timeout, child.current, &child.kill_reason)
                    {
                        next = next.min(started + timeout);
                    }
                }
                State::Done => {}
            }
        }
        if let Some(grace_end) = self.stopping {
            next = next.min(grace_end);
        }
        next
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if let Some(grace_end) = self.stopping
            && now >= grace_end
        {
            self.kill_all("shutdown grace period expired");
        }
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            match &mut slot.state {
                State::Backoff(at) if *at <= now && self.stopping.is_none() => self.launch(i),
                State::Running(child) => {
                    if let (Some(timeout), Some((task, started)), None) =
                        (slot.config.timeout, child.current, &child.kill_reason)
                        && now >= started + timeout
                    {
                        let t = humantime::format_duration(timeout);
                        self.log.error(format_args!(
                                "Task {task} on queue {} exceeded its timeout of {t}; killing its worker",
                                slot.config.queue
                            ));
                        child.kill_reason = Some(format!("timeout after {t}"));
                        child.kill();
                    }
                }
                _ => {}
            }
        }
    }

    fn report_status(&self) {
        for slot in &self.slots {
            let queue = &slot.config.queue;
            match &slot.state {
                State::Running(child) => {
                    let (state, task) = match child.current {
                        Some((task, _)) => ("processing", task.to_string()),
                        None => ("idle", "-".into()),
                    };
                    self.log.info(format_args!(
                        "Worker for queue {queue}: pid {}, state {state}, task {task}, processed {}, uptime {:.1}s",
                        child.pid,
                        slot.processed,
                        child.started.elapsed().as_secs_f64()
                    ));
                }
                State::Backoff(at) => self.log.info(format_args!(
                    "Worker for queue {queue}: state backoff, restart in {:.1}s, processed {}",
                    at.saturating_duration_since(Instant::now()).as_secs_f64(),
                    slot.processed
                )),
                State::Done => self.log.info(format_args!(
                    "Worker for queue {queue}: state stopped, processed {}",
                    slot.processed
                )),
            }
        }
    }

    /// SIGHUP: rebuild the application and restart only the children whose queue changed.
    fn reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.log
            .info(format_args!("Reload requested; re-reading settings"));
        let app = match App::build(
            &self.args,
            Requirement {
                package: "rex.asynctask",
                fallback: None,
            },
        ) {
            Ok(app) => app,
            Err(e) => {
                self.log.error(format_args!(
                    "Reload failed; keeping the current settings:\n{}",
                    e.render()
                ));
                return;
            }
        };
        let new_queues = all_queues(&app.settings);
        let old_app = std::mem::replace(&mut self.app, app);
        let mut log = self.app.settings.log_config();
        log.quiet = self.options.quiet;
        logging::configure(log);
        let mut kept: HashMap<String, usize> = HashMap::new();
        for slot in &mut self.slots {
            let unchanged = new_queues.contains(&slot.config);
            if unchanged {
                *kept.entry(slot.config.queue.clone()).or_default() += 1;
            } else if !slot.retiring {
                slot.retiring = true;
                match &mut slot.state {
                    State::Running(child) => child.quit(),
                    _ => slot.state = State::Done,
                }
            }
        }
        let added: Vec<QueueConfig> = new_queues
            .into_iter()
            .filter(|q| !kept.contains_key(&q.queue))
            .collect();
        match self.slots_for(added) {
            Ok(new_slots) => {
                let start = self.slots.len();
                self.slots.extend(new_slots);
                for i in start..self.slots.len() {
                    self.launch(i);
                }
                if self.scheduler.is_some() {
                    // New schedules: restart the producer (fires stay deduplicated by key).
                    self.stop_scheduler();
                    self.start_scheduler();
                }
            }
            Err(e) => {
                self.log
                    .error(format_args!("Reload failed: {}", e.render()));
                self.app = old_app;
            }
        }
    }

    fn live_owners(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|s| match &s.state {
                State::Running(child) => Some(child.owner.clone()),
                _ => None,
            })
            .collect()
    }

    async fn renew_leases(&self, lease: Duration) {
        let owners = self.live_owners();
        if owners.is_empty() {
            return;
        }
        if let Err(e) = self.transport.renew(&owners, lease).await {
            self.log.warn(format_args!("Cannot renew task leases: {e}"));
        }
    }

    /// The transport's upkeep runs beside the loop (a vacuum may take a while), one at a time.
    fn maintain(&mut self) {
        if self
            .maintenance
            .as_ref()
            .is_some_and(|job| !job.is_finished())
        {
            return;
        }
        let (transport, log) = (Arc::clone(&self.transport), self.log.clone());
        self.maintenance = Some(tokio::spawn(async move {
            match transport.maintain().await {
                Ok(Some(done)) => log.debug(format_args!("{done}")),
                Ok(None) => {}
                // An outage is reported by the operations that need the server.
                Err(e) if e.is_retryable() => {}
                Err(e) => log.warn(format_args!("Transport maintenance failed: {e}")),
            }
        }));
    }

    /// Leases that expired belong to a master (or host) that died: settle them as crashes.
    async fn reclaim_expired(&self) {
        match self.transport.expired(SystemTime::now()).await {
            Ok(tasks) => {
                for task in tasks {
                    self.reclaim(&task, &format!("lease expired (owner {})", task.owner))
                        .await;
                }
            }
            Err(e) => self
                .log
                .warn(format_args!("Cannot look for expired leases: {e}")),
        }
    }

    /// At start: besides expired leases, tasks held by a dead master on this host are reclaimed
    /// at once (its pid is gone or belongs to another process now).
    async fn reclaim_orphans(&self) {
        let far_future = SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let Ok(running) = self.transport.expired(far_future).await else {
            return;
        };
        let host = self.owner_prefix.split(':').next().unwrap_or("");
        for task in running {
            let parts: Vec<&str> = task.owner.split(':').collect();
            let dead_here = match parts.as_slice() {
                [h, pid, start, _gen] if *h == host => {
                    let pid: u32 = pid.parse().unwrap_or(0);
                    let start: u64 = start.parse().unwrap_or(0);
                    pid != std::process::id() && child::process_start_time(pid) != Some(start)
                }
                _ => false,
            };
            if dead_here || task.lease_until <= SystemTime::now() {
                self.reclaim(&task, &format!("its master died (owner {})", task.owner))
                    .await;
            }
        }
    }

    /// A task whose master (or host) died goes back to pending without using an attempt: the
    /// death is not attributable to the task. (A child's death is, and is settled at once by
    /// its own master in `on_exit`.)
    async fn reclaim(&self, task: &rex_transport::Task, reason: &str) {
        match self.transport.release(&task.lease(), reason).await {
            Ok(true) => self.log.warn(format_args!(
                "Reclaimed task {} of queue {}: {reason}; it is pending again",
                task.id, task.queue
            )),
            Ok(false) => {}
            Err(e) => self
                .log
                .warn(format_args!("Cannot reclaim task {}: {e}", task.id)),
        }
    }
}
