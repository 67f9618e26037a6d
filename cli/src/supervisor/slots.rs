//! The master's child slots: one per queue and concurrency index, with the state of its child,
//! its restart history and the timers that belong to it (relaunch backoff, task timeouts).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::Supervisor;
use super::child::Child;
use super::death::DeathCause;
use super::restart::Restarts;
use crate::error::{Error, Result};
use crate::settings::{QueueConfig, RetryPolicy};

/// The configured queues, sorted by name, then the consumer queue of each schedule entry (a
/// queue already listed is not added twice).
pub(super) fn all_queues(settings: &crate::settings::Settings) -> Vec<QueueConfig> {
    let mut queues = settings.queues().to_vec();
    for entry in settings.schedules() {
        let config = entry.queue_config();
        if !queues.iter().any(|q| q.queue == config.queue) {
            queues.push(config);
        }
    }
    queues
}

/// One child position: a queue and an index below its concurrency.
pub(super) struct Slot {
    pub(super) config: QueueConfig,
    pub(super) state: State,
    pub(super) restarts: Restarts,
    /// Tasks finished by this slot's earlier children (the live one's are on its beacon).
    pub(super) processed: u64,
    /// How many times this slot's child died and was started again.
    pub(super) deaths: u64,
    /// Set while the slot is being removed (reload): it is not relaunched.
    pub(super) retiring: bool,
    /// Broker-held leases only: the last tasks this slot's children held when they died, with
    /// the reason, for the queue's next children (the broker gives such a task back to whoever
    /// claims it; a child started before the death gets the generic reason).
    pub(super) lost: VecDeque<(i64, String)>,
    /// Broker-held leases only: the other tasks those children had claimed (not running when
    /// they died), which the queue's next children run again without charging them.
    pub(super) innocent: VecDeque<i64>,
    /// Broker-held leases only: the tasks those children had completed (without submits) but
    /// not recorded, which the queue's next children record instead of running them again.
    pub(super) completed: VecDeque<i64>,
    /// What of the live child's beacon tally the master has counted already.
    pub(super) counted: rex_transport::Counters,
}

/// How many lost tasks a slot remembers for its next children.
pub(super) const LOST_REMEMBERED: usize = 16;
/// How many innocent task ids a slot remembers: a few windows of the largest `prefetch`.
pub(super) const INNOCENT_REMEMBERED: usize = 4096;

/// How often the master looks at an idle child's beacon in a queue with a timeout: a task it
/// starts is seen within this, and its deadline is exact from then on.
const TIMEOUT_WATCH: Duration = Duration::from_millis(50);

pub(super) enum State {
    Running(Child),
    /// Waiting to be relaunched.
    Backoff(Instant),
    /// Stopped in order (halted when empty, quit on shutdown or reload).
    Done,
}

impl Supervisor {
    pub(super) fn slots_for(&self, queues: Vec<QueueConfig>) -> Result<Vec<Slot>> {
        let mut slots = Vec::new();
        for config in queues {
            if self.app.worker(&config.worker).is_none() {
                return Err(Error::new(format!(
                    "Worker \"{}\" does not exist",
                    config.worker
                )));
            }
            for _ in 0..config.concurrency.max(1) {
                slots.push(Slot {
                    config: config.clone(),
                    state: State::Backoff(Instant::now()),
                    restarts: Restarts::default(),
                    processed: 0,
                    deaths: 0,
                    retiring: false,
                    lost: VecDeque::new(),
                    innocent: VecDeque::new(),
                    completed: VecDeque::new(),
                    counted: Default::default(),
                });
            }
        }
        Ok(slots)
    }

    /// The retry policy of each configured queue, for settling a dead child's tasks.
    pub(super) fn policies(&self) -> HashMap<String, RetryPolicy> {
        self.slots
            .iter()
            .map(|s| (s.config.queue.clone(), s.config.retry))
            .collect()
    }

    pub(super) fn live_owners(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|s| match &s.state {
                State::Running(child) => Some(child.owner.clone()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn next_deadline(&self) -> Instant {
        let mut next = Instant::now() + Duration::from_secs(3600);
        for slot in &self.slots {
            match &slot.state {
                State::Backoff(at) => next = next.min(*at),
                State::Running(child) => {
                    if let (Some(timeout), None) = (slot.config.timeout, &child.kill_reason) {
                        next = next.min(match child.current() {
                            Some(running) => running.started + timeout,
                            // A task may start at any moment without telling the master.
                            None => Instant::now() + TIMEOUT_WATCH,
                        });
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

    pub(super) fn on_timers(&mut self) {
        self.on_timers_at(Instant::now());
    }

    /// The timers that are due at `now`.
    pub(super) fn on_timers_at(&mut self, now: Instant) {
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
                    if let (Some(timeout), Some(running), None) =
                        (slot.config.timeout, child.current(), &child.kill_reason)
                        && now >= running.started + timeout
                    {
                        let t = humantime::format_duration(timeout);
                        self.log.error(format_args!(
                            "Task {} on queue {} exceeded its timeout of {t}; killing its worker",
                            running.task, slot.config.queue
                        ));
                        child.kill_reason =
                            Some((DeathCause::Timeout(timeout), (running.task, running.token)));
                        child.kill();
                    }
                }
                _ => {}
            }
        }
    }

    pub(super) fn report_status(&self) {
        for slot in &self.slots {
            let queue = &slot.config.queue;
            match &slot.state {
                State::Running(child) => {
                    let (state, task) = match child.current() {
                        Some(running) => ("processing", running.task.to_string()),
                        None => ("idle", "-".into()),
                    };
                    self.log.info(format_args!(
                        "Worker for queue {queue}: pid {}, state {state}, task {task}, processed {}, uptime {:.1}s",
                        child.pid,
                        slot.processed + child.finished(),
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
}
