//! The worker child (`rex-worker`, or `rex __worker`): claims tasks from one queue and runs its
//! worker on them.
//!
//! Started only by the master (see [`crate::supervisor`]), with the control socket on fd 3
//! and its [beacon](crate::beacon) on fd 4. The loop is synchronous: each transport operation
//! runs on a current-thread runtime with `block_on`, and the worker code runs on this thread in
//! between, so plugin callbacks never re-enter the runtime. A panic in the worker is caught
//! inside the plugin and fails only that task; anything that kills the process is seen by the
//! master, which charges the task the beacon names and releases the others.
//!
//! # Batches
//!
//! The child claims a [`window`] of tasks at once and runs them in order. Their outcomes
//! (completions with their follow-up submits, failures) are kept as [`Settlement`]s and
//! recorded together with the next claim, in one round trip: when the batch is used up, when
//! the oldest unrecorded outcome is [`FLUSH_DELAY`] old (checked between tasks), before the
//! child idles or stops. On a transport error they are kept and sent again (settling twice is
//! safe: what was applied comes back stale). If the child dies, the master completes the
//! completions its beacon lists and releases the rest: nothing is lost.
//!
//! Files: `start` is the child's entry point (and how the master finds it); this one claims and
//! runs; `record` sends the outcomes; `window` sizes the claims;
//! `executor` runs a task (plugin, `ctl_executor`, bench); `lost` settles a task a broker
//! hands back after its worker died (RabbitMQ); `pause` gives back the tasks claimed ahead
//! when the queue is paused.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

mod executor;
mod limits;
mod lost;
mod pause;
mod record;
mod start;
pub mod window;

pub use start::{BINARY, Program, TASK_NAME, main, program, task};

pub(crate) use executor::submits_of;
use executor::{Attempted, CtlExecutor, Executor, JsonMap, bench_record, run_plugin};
use window::Window;

use crate::beacon::{Beacon, Ended, Finished};
use crate::control::{self, HaltReason, Up, WorkerSpec};
use crate::error::{Error, Result};
use crate::logging::{self, Logger};
use crate::package::{BENCH_WORKER, CTL_EXECUTOR};
use crate::plugin::{self, Plugin};
use crate::project::App;
use crate::settings::QueueConfig;
use rex_transport::{Failure, Settlement, Task, TaskId, Transport};

/// Set by the master's `quit` command or by SIGTERM: finish the current task, then stop.
static QUIT: AtomicBool = AtomicBool::new(false);

/// Outcomes waiting this long are recorded before the next task starts, even mid-batch.
pub const FLUSH_DELAY: Duration = Duration::from_millis(50);

/// Reports to the master (absent when draining in-process).
struct Events {
    writer: Option<Mutex<UnixStream>>,
}

impl Events {
    fn send(&self, msg: &Up) {
        if let Some(writer) = &self.writer {
            let line = control::encode(msg);
            // A vanished master is handled by PDEATHSIG; nothing useful to do on error here.
            let _ = writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(line.as_bytes());
        }
    }
}

struct Consumer {
    queue: String,
    worker: String,
    owner: String,
    lease: Duration,
    /// `asynctask_max_payload_size`, for the tasks the worker submits.
    max_payload: usize,
    poll: Duration,
    halt_when_empty: bool,
    retry: crate::settings::RetryPolicy,
    rate: Option<crate::settings::RateLimit>,
    recent: VecDeque<Instant>,
    logger: Logger,
    transport: Arc<dyn Transport>,
    executor: Executor,
    rt: tokio::runtime::Runtime,
    events: Events,
    /// Where the master reads what this child runs.
    beacon: Beacon,
    wake: Arc<tokio::sync::Notify>,
    processed: u64,
    window: Window,
    /// Claimed, not started yet (in claim order).
    claimed: VecDeque<Task>,
    /// How many tasks the last claim returned (the bench records it).
    batch_len: usize,
    /// Outcomes not recorded yet, and since when the oldest waits.
    pending: Vec<Settlement>,
    pending_since: Option<Instant>,
    /// Set when sending `pending` failed: some of it may have been applied, so a stale result
    /// on the next attempt is expected rather than news.
    resent: bool,
    /// Set after a transport error: a claim may have been applied while its reply was lost,
    /// leaving a task leased to this child that it does not know about (and whose lease its
    /// master keeps renewing). Checked before the next claim.
    lost_replies: std::cell::Cell<bool>,
    /// Why this queue's earlier children died, by the task they held (see `settle_lost`).
    lost_reasons: Vec<(TaskId, String)>,
    /// The tasks those children had claimed but were not running (see `settle_lost`).
    lost_innocent: std::collections::HashSet<TaskId>,
    /// The tasks those children had completed (without submits) but not recorded.
    lost_completed: std::collections::HashSet<TaskId>,
    /// Whether the broker holds the leases: the beacon then lists each claim's tasks.
    broker_held: bool,
    /// The transport outage under way, if any: backoff and bounded logging.
    outage: std::cell::RefCell<crate::outage::Outage>,
    /// Whether the queue was paused since the last claim (see `pause`).
    pause: pause::PauseWatch,
}

impl Consumer {
    fn new(
        spec: &WorkerSpec,
        events: Events,
        beacon: Beacon,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<Consumer> {
        let transport = rex_transport::events::tap(rex_transport::open(&spec.transport)?);
        // Connections are made by the runtime that first uses them, so it is chosen before.
        let rt = if transport.needs_constant_io() {
            crate::runtime::with_io_thread()?
        } else {
            crate::runtime::current_thread()?
        };
        let executor = match &spec.plugin {
            None if spec.worker == CTL_EXECUTOR => Executor::Ctl(CtlExecutor {
                rex: spec.rex.clone(),
                project_args: spec.project_args.to_argv(),
            }),
            None if spec.worker == BENCH_WORKER => Executor::Bench(Default::default()),
            None => return Err(Error::new(format!("worker {} has no plugin", spec.worker))),
            Some(path) => {
                let plugin = Plugin::load(path, None).map_err(Error::from)?;
                plugin
                    .init(
                        plugin::host_table(spec.log.min_level()),
                        &json!({ "settings": spec.settings, "worker": spec.worker }),
                    )
                    .map_err(Error::from)?;
                Executor::Plugin(plugin)
            }
        };
        // One at a time under a rate limit: the limit counts tasks run, and a held batch
        // would wait out the limit.
        let broker_held = transport.leases_held_by_broker();
        let window_cap = if spec.rate.is_some() {
            1
        } else {
            spec.prefetch as usize
        };
        Ok(Consumer {
            queue: spec.queue.clone(),
            worker: spec.worker.clone(),
            owner: spec.owner.clone(),
            lease: Duration::from_millis(spec.lease_ms),
            max_payload: spec.max_payload,
            poll: Duration::from_millis(spec.poll_interval_ms.max(1)),
            halt_when_empty: spec.halt_when_empty,
            retry: spec.retry,
            rate: spec.rate,
            recent: VecDeque::new(),
            logger: Logger::new(spec.logger.clone()),
            transport,
            executor,
            rt,
            events,
            beacon,
            wake,
            processed: 0,
            window: Window::new(window_cap),
            claimed: VecDeque::new(),
            batch_len: 0,
            pending: Vec::new(),
            pending_since: None,
            resent: false,
            lost_replies: std::cell::Cell::new(false),
            lost_reasons: spec.lost_reasons.clone(),
            lost_innocent: spec.lost_innocent.iter().copied().collect(),
            lost_completed: spec.lost_completed.iter().copied().collect(),
            broker_held,
            outage: Default::default(),
            pause: Default::default(),
        })
    }

    /// Work the queue until told to quit or, with `halt_when_empty`, until it is drained.
    fn run(&mut self) -> Result<u64> {
        self.logger
            .info(format_args!("Starting; queue={}", self.queue));
        self.events.send(&Up::Ready);
        let reason = loop {
            if QUIT.load(Ordering::SeqCst) {
                self.stop();
                break HaltReason::Quit;
            }
            if self.release_if_paused() {
                continue;
            }
            if let Some(task) = self.claimed.pop_front() {
                if self
                    .pending_since
                    .is_some_and(|since| since.elapsed() >= FLUSH_DELAY)
                {
                    self.flush_once();
                }
                self.process(task);
                continue;
            }
            // The batch is used up: record its outcomes and claim the next in one call.
            self.respect_rate_limit();
            if self.lost_replies.get() {
                self.release_strays();
            }
            let want = self.window.size();
            match self.exchange(want) {
                Ok(tasks) if !tasks.is_empty() => {
                    self.recovered();
                    self.window.claimed(want, tasks.len());
                    self.pause.claimed();
                    self.batch_len = tasks.len();
                    if self.broker_held {
                        self.beacon.claimed(tasks.iter().map(|task| task.id));
                    }
                    self.claimed.extend(tasks);
                }
                Ok(_) => {
                    self.recovered();
                    self.window.claimed(want, 0);
                    if self.halt_when_empty {
                        match self.rt.block_on(self.transport.counts(&self.queue)) {
                            Ok(counts) if counts.is_drained() => {
                                self.logger.info(format_args!("No tasks found in queue"));
                                break HaltReason::Empty;
                            }
                            // Retries due later, or tasks still running elsewhere: wait for them.
                            Ok(counts) => {
                                let until_due = counts
                                    .next_run_at
                                    .and_then(|t| t.duration_since(SystemTime::now()).ok());
                                self.idle(until_due.map_or(self.poll, |d| d.min(self.poll)));
                            }
                            Err(e) => self.transport_trouble(e),
                        }
                    } else {
                        self.idle(self.poll);
                    }
                }
                Err(e) => self.transport_trouble(e),
            }
        };
        self.logger.info(format_args!("Terminating"));
        self.events.send(&Up::Halted { reason });
        Ok(self.processed)
    }

    /// Wait for work (a transport wake-up, the poll interval) or a quit request.
    fn idle(&self, timeout: Duration) {
        let waited = self.transport.wait(&self.queue, timeout);
        // A wait that fails (the broker is down) must not cut the pause short: that would
        // turn every retry loop into a hot one.
        let wait = async move {
            if waited.await.is_err() {
                tokio::time::sleep(timeout).await;
            }
        };
        let wake = self.wake.clone();
        self.rt.block_on(async move {
            tokio::select! {
                _ = wait => {}
                _ = wake.notified() => {}
            }
        });
    }

    /// Log a transport failure and back off (bounded exponential), never crash-looping.
    /// Between tasks this child holds no lease: any task still leased to it was claimed by a
    /// request whose reply was lost. Put such tasks back (no attempt used).
    ///
    /// Called between batches: nothing is claimed and not started, and the only tasks this
    /// child knows it holds are those whose outcome is pending, which are kept.
    fn release_strays(&self) {
        match self.rt.block_on(self.transport.owned_by(&self.owner)) {
            Ok(held) => {
                let strays = held
                    .into_iter()
                    .filter(|task| !self.pending.iter().any(|s| *s.lease() == task.lease()));
                for task in strays {
                    let released = self.rt.block_on(
                        self.transport
                            .release(&task.lease(), "claimed by a request whose reply was lost"),
                    );
                    if let Ok(true) = released {
                        self.logger.info(format_args!(
                            "Released task {}, claimed while the transport connection failed",
                            task.id
                        ));
                    }
                }
                self.lost_replies.set(false);
            }
            // The claim that follows fails too and reports the outage.
            Err(e) => self.logger.debug(format_args!(
                "Cannot check for tasks claimed during the outage: {e}"
            )),
        }
    }

    /// A failed claim or check: back off (bounded, jittered) and log at a bounded rate. The
    /// tasks this child holds stay leased (its master renews them) and their outcomes stay
    /// pending: an outage is never charged to a payload.
    fn transport_trouble(&self, e: rex_transport::TransportError) {
        self.lost_replies.set(true);
        let delay = self.outage.borrow_mut().failed_now(&self.logger, &e);
        self.idle(delay);
    }

    fn recovered(&self) {
        self.outage.borrow_mut().recovered_now(&self.logger);
    }

    /// `rate_max_calls` per `rate_period`, counting processed tasks (not polls).
    fn respect_rate_limit(&mut self) {
        let Some(rate) = self.rate else { return };
        while let Some(oldest) = self.recent.front() {
            if oldest.elapsed() >= rate.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= rate.max_calls as usize
            && let Some(oldest) = self.recent.front()
        {
            let pause = rate.period.saturating_sub(oldest.elapsed());
            // Record what is done before waiting, not after.
            if !self.pending.is_empty() {
                let _ = self.exchange(0);
            }
            self.logger.debug(format_args!(
                "Rate limited on queue {}, sleeping for {:.6} seconds",
                self.queue,
                pause.as_secs_f64()
            ));
            self.idle(pause);
        }
    }

    /// Run one task; its outcome joins the pending settlements.
    fn process(&mut self, task: Task) {
        if task.lost && !self.settle_lost(&task) {
            return;
        }
        // On the beacon first: from here on, a death of this process is charged to this task.
        self.beacon.start(task.id, task.lease_token, task.attempt);
        self.logger
            .debug(format_args!("Got payload: {}", JsonMap(&task.payload)));
        logging::set_current_task(Some(task.id));
        let started = Instant::now();
        let outcome = match &mut self.executor {
            Executor::Plugin(plugin) => run_plugin(plugin, &self.worker, &task),
            Executor::Ctl(ctl) => ctl.run(&self.logger, &task),
            Executor::Bench(log) => bench_record(log, &task, self.batch_len),
        };
        self.window.ran(started.elapsed());
        if self.rate.is_some() {
            self.recent.push_back(Instant::now());
        }
        let ran = started.elapsed();
        let settlement = self.settlement(&task, outcome);
        // A plain completion is listed on the beacon until it is recorded, for the master to
        // complete if this process dies first.
        let plain = matches!(&settlement,
            Settlement::Complete { submits, result: None, .. } if submits.is_empty());
        let ended = match &settlement {
            Settlement::Fail { retry_at: None, .. } => Ended::Failed,
            Settlement::Fail { .. } => Ended::Retried,
            _ => Ended::Succeeded,
        };
        // A later attempt's wait would include its earlier attempts and retry delays.
        let waited = (task.attempt == 1)
            .then(|| SystemTime::now().duration_since(task.created_at).ok())
            .flatten()
            .map(|since_submit| since_submit.saturating_sub(ran));
        self.beacon.finish(
            plain.then_some((task.id, task.lease_token)),
            Finished { ended, ran, waited },
        );
        logging::set_current_task(None);
        self.processed += 1;
        let failed = matches!(settlement, Settlement::Fail { .. });
        self.pending.push(settlement);
        self.pending_since.get_or_insert_with(Instant::now);
        if failed {
            // Recorded at once (failures are rare): a failure not yet recorded when this
            // process dies would be released without using an attempt, and a task that breaks
            // its process for the next one could then run forever.
            self.flush_once();
        }
    }

    /// What to record for an attempt: a completion (with the follow-ups it submitted), or a
    /// failure, retried or kept by the queue's policy.
    fn settlement(&self, task: &Task, outcome: Attempted) -> Settlement {
        let lease = task.lease();
        let (detail, reason, permanent) = match outcome {
            Attempted::Done { submits, result } => {
                let done = Settlement::Complete {
                    lease,
                    submits,
                    result,
                };
                // Follow-ups the transport would refuse fail the task (not the whole batch), as
                // does a result too large to keep.
                match rex_transport::batch::validate_submits(std::slice::from_ref(&done))
                    .and_then(|()| limits::check_sizes(&done, self.max_payload))
                    .map_err(|e| e.to_string())
                    .and_then(|()| limits::check_result(&done, self.max_payload))
                {
                    Ok(()) => {
                        self.logger.debug(format_args!("Processing complete"));
                        return done;
                    }
                    Err(e) => (e.clone(), e, true),
                }
            }
            Attempted::Failed {
                detail,
                reason,
                permanent,
            } => (detail, reason, permanent),
        };
        // ctl_executor's report has its own headline, as in the original.
        if detail.starts_with("Failed execution\n") {
            self.logger.error(format_args!("{detail}"));
        } else {
            self.logger.error(format_args!(
                "An unhandled exception occurred while processing the payload\n{detail}"
            ));
        }
        let retry_at = if permanent {
            None
        } else {
            self.retry.retry_at(task, rex_transport::FailureKind::Error)
        };
        if let Some(at) = retry_at {
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            self.logger.info(format_args!(
                "Task {} will be retried in {:.1}s (attempt {} of {} failed)",
                task.id,
                wait.as_secs_f64(),
                task.attempt,
                self.retry.max_attempts
            ));
        }
        Settlement::Fail {
            lease,
            failure: Failure::error(reason),
            retry_at,
        }
    }
}

/// `rex asynctask-process`: drain `queue` in this process with `worker`; returns the count.
pub fn drain_in_process(app: &App, queue: &str, worker: &str) -> Result<u64> {
    // The queue's configured options apply, whichever worker drains it here.
    let config = QueueConfig {
        worker: worker.to_string(),
        ..app
            .settings
            .queues()
            .iter()
            .find(|q| q.queue == queue)
            .cloned()
            .unwrap_or_else(|| QueueConfig::with_defaults(queue, worker))
    };
    logging::configure(app.settings.log_config());
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let owner = format!("{host}:{}:process", std::process::id());
    let spec = WorkerSpec::new(app, &config, owner, true)?;
    let mut consumer = Consumer::new(
        &spec,
        Events { writer: None },
        Beacon::local(),
        Arc::new(tokio::sync::Notify::new()),
    )?;
    consumer.run()
}
