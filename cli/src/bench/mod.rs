//! `rex asynctask-bench`: measures a transport through real `asynctask-workers` processes.
//!
//! The bench submits tasks for the built-in `bench_worker` (a no-op that appends
//! `<pid> <submitted µs> <started µs>` to a file when its payload asks), runs a real master
//! (`rex asynctask-workers rex.asynctask`, in a scratch directory so no project settings
//! interfere), and reports:
//!
//! * submit rate (batches of 500, as `asynctask-submit -` sends them; one `submit` per task in
//!   steady mode),
//! * drain rate (master start to last task done) and end-to-end rate,
//! * submit->start latency p50/p99 (`--mode steady`: tasks submitted at `--rate` while the
//!   workers run, so latency is not queueing),
//! * restart latency (steady mode: a child is SIGKILLed half-way; time until a new child
//!   starts a task),
//! * peak RSS of the master and of the largest child (`VmHWM`),
//! * the claim batch sizes the children saw (`--prefetch` caps them),
//! * for SQLite, the rate of a bare rusqlite loop doing the same claim+ack statements in
//!   batches of `--prefetch`, and the ratio to it.
//!
//! `--mode soak` (module `soak`) runs steady for `--duration`, SIGKILLs a child every
//! `--restart-every` and samples memory and open descriptors of every process over time.
//!
//! Sampling loops here (progress, RSS) are measurement, not synchronisation.

mod ceiling;
mod master;
mod report;
mod soak;

use ceiling::bare_sqlite_rate;
use master::{Master, children_of, unfinished};
use report::{Progress, print_report};
use soak::{Sample, SoakPlan};

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cli::Parsed;
use crate::error::{Error, Result};
use crate::package::BENCH_WORKER;
use rex_transport::{Submit, SubmitOptions, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    BurnDown,
    Steady,
    Soak(SoakPlan),
}

struct Options {
    transport: Option<String>,
    tasks: u64,
    queues: u32,
    concurrency: u32,
    prefetch: u32,
    payload_bytes: usize,
    mode: Mode,
    rate: u64,
    json: bool,
}

fn options(parsed: &Parsed) -> Result<Options> {
    let number = |name: &str, default: u64| -> Result<u64> {
        match parsed.value(name) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::new(format!("--{name} expects a positive integer")).context("Got:", v)
            }),
        }
    };
    let duration = |name: &str| -> Result<Option<Duration>> {
        parsed
            .value(name)
            .map(|v| crate::settings::parse_duration(&v))
            .transpose()
            .map_err(|e| e.context("While parsing option:", format!("--{name}")))
    };
    let mode = match parsed.value("mode").as_deref() {
        None | Some("burn-down") => Mode::BurnDown,
        Some("steady") => Mode::Steady,
        Some("soak") => Mode::Soak(SoakPlan {
            duration: duration("duration")?
                .unwrap_or(Duration::from_secs(60))
                .max(Duration::from_millis(100)),
            restart_every: duration("restart-every")?.filter(|d| !d.is_zero()),
        }),
        Some(other) => {
            return Err(
                Error::with_body("Expected one of:", "burn-down, steady, soak")
                    .context("Got:", other.to_string())
                    .context("While parsing option:", "--mode"),
            );
        }
    };
    let rate = number("rate", 500)?;
    // A soak submits at --rate for --duration.
    let tasks = match mode {
        Mode::Soak(plan) => ((plan.duration.as_secs_f64() * rate as f64) as u64).max(1),
        _ => number("tasks", 10_000)?,
    };
    Ok(Options {
        transport: parsed.value("transport"),
        tasks,
        queues: u32::try_from(number("queues", 1)?).unwrap_or(u32::MAX),
        concurrency: u32::try_from(number("concurrency", 1)?).unwrap_or(u32::MAX),
        prefetch: u32::try_from(number(
            "prefetch",
            u64::from(crate::settings::DEFAULT_PREFETCH),
        )?)
        .unwrap_or(u32::MAX),
        payload_bytes: match parsed.value("payload-bytes") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                Error::new("--payload-bytes expects a non-negative integer").context("Got:", v)
            })?,
        },
        mode,
        rate,
        json: parsed.flag("json"),
    })
}

/// What a run measured.
#[derive(Debug, Default)]
struct Report {
    transport: String,
    submit_s: f64,
    drain_s: f64,
    end_to_end_s: f64,
    processed: u64,
    latencies_us: Vec<u64>,
    /// The size of the claim batch each task came in.
    batch_sizes: Vec<u64>,
    restart_ms: Option<f64>,
    master_rss_kb: u64,
    child_rss_kb: u64,
    bare_rate: Option<f64>,
    /// `--mode soak`: the processes' resources over time.
    samples: Vec<Sample>,
}

pub fn task(parsed: &Parsed) -> Result<i32> {
    let opts = options(parsed)?;
    let scratch = Scratch::new()?;
    let uri = match &opts.transport {
        Some(uri) => uri.clone(),
        None => format!("sqlite:{}", scratch.path.join("bench.db").display()),
    };
    // As every rex process: its submits are events while someone follows.
    let transport = rex_transport::events::tap(rex_transport::open(&uri)?);
    if !transport.is_shared() {
        return Err(Error::new(format!(
            "{} cannot be shared by worker processes; benchmark sqlite:PATH or a server transport",
            transport.describe()
        )));
    }
    // One runtime, shared by the submitting thread and the watching one: connections of a
    // networked transport are driven by the runtime that opened them, so they must keep being
    // driven while either thread waits.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the async runtime: {e}")))?;
    let tag: String = std::iter::repeat_with(fastrand::lowercase)
        .take(6)
        .collect();
    let queues: Vec<String> = (0..opts.queues)
        .map(|i| format!("bench_{tag}_{i}"))
        .collect();
    let log_path = scratch.path.join("starts.log");
    let mut report = Report {
        transport: transport.describe(),
        ..Report::default()
    };
    let progress = Progress::new(opts.tasks, opts.json);

    let started = Instant::now();
    match opts.mode {
        Mode::BurnDown => {
            let t0 = Instant::now();
            rt.block_on(submit_all(&transport, &queues, &opts, &log_path, None))?;
            report.submit_s = t0.elapsed().as_secs_f64();
            let mut master = Master::spawn(&uri, &queues, &opts, &scratch.path, true)?;
            let t1 = Instant::now();
            master.watch(&rt, &transport, &queues, opts.tasks, &progress)?;
            report.drain_s = t1.elapsed().as_secs_f64();
            (report.master_rss_kb, report.child_rss_kb) =
                (master.master_rss_kb, master.child_rss_kb);
            report.batch_sizes = read_starts(&log_path).iter().map(|s| s.3).collect();
        }
        Mode::Steady | Mode::Soak(_) => {
            let mut master = Master::spawn(&uri, &queues, &opts, &scratch.path, false)?;
            master.wait_children(opts.queues as usize * opts.concurrency as usize)?;
            let t0 = Instant::now();
            let kill_at = std::sync::Mutex::new(None);
            let submitter = {
                let (transport, queues, log_path) =
                    (transport.clone(), queues.clone(), log_path.clone());
                let (tasks, rate, bytes, master_pid) =
                    (opts.tasks, opts.rate, opts.payload_bytes, master.pid());
                let kill_at = &kill_at;
                let rt = &rt;
                // Steady kills one child half-way; a soak kills them as it samples.
                let kill_after = match opts.mode {
                    Mode::Soak(_) => u64::MAX,
                    _ => tasks / 2,
                };
                move || -> Result<f64> {
                    let pacing = Some((rate, kill_after, master_pid, kill_at));
                    let o = Options {
                        tasks,
                        payload_bytes: bytes,
                        ..options_default()
                    };
                    let t = Instant::now();
                    rt.block_on(submit_all(&transport, &queues, &o, &log_path, pacing))?;
                    Ok(t.elapsed().as_secs_f64())
                }
            };
            let submit_s = std::thread::scope(|scope| {
                let handle = scope.spawn(submitter);
                let watched = match opts.mode {
                    Mode::Soak(plan) => master
                        .soak(&rt, &transport, &queues, opts.tasks, plan, &progress)
                        .map(|samples| report.samples = samples),
                    _ => master.watch(&rt, &transport, &queues, opts.tasks, &progress),
                };
                let submitted = handle
                    .join()
                    .map_err(|_| Error::new("the submitting thread panicked"))?;
                watched.and(submitted)
            })?;
            report.submit_s = submit_s;
            report.drain_s = t0.elapsed().as_secs_f64();
            master.stop()?;
            (report.master_rss_kb, report.child_rss_kb) =
                (master.master_rss_kb, master.child_rss_kb);
            let kill_at = kill_at.lock().map(|k| *k).unwrap_or(None);
            let starts = read_starts(&log_path);
            report.latencies_us = starts.iter().map(|s| s.2.saturating_sub(s.1)).collect();
            report.batch_sizes = starts.iter().map(|s| s.3).collect();
            report.restart_ms =
                kill_at.and_then(|(killed_pid, at_us)| restart_latency(&starts, killed_pid, at_us));
        }
    }
    report.end_to_end_s = started.elapsed().as_secs_f64();
    progress.finish();
    let left = rt.block_on(async {
        let mut left = 0;
        for q in &queues {
            let c = transport.counts(q).await?;
            left += c.ready + c.delayed + c.running + c.failed;
        }
        Ok::<_, rex_transport::TransportError>(left)
    })?;
    report.processed = opts.tasks.saturating_sub(left);
    if uri.starts_with("sqlite:") {
        report.bare_rate = Some(bare_sqlite_rate(
            &scratch.path.join("bare.db"),
            opts.tasks.min(100_000),
            opts.prefetch as usize,
        )?);
    }
    print_report(&report, &opts);
    if left > 0 {
        return Err(Error::new(format!("{left} tasks were not processed")));
    }
    Ok(0)
}

fn options_default() -> Options {
    Options {
        transport: None,
        tasks: 0,
        queues: 1,
        concurrency: 1,
        prefetch: crate::settings::DEFAULT_PREFETCH,
        payload_bytes: 0,
        mode: Mode::BurnDown,
        rate: 1,
        json: false,
    }
}

type Pacing<'a> = (u64, u64, u32, &'a std::sync::Mutex<Option<(u32, u64)>>);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Submit `opts.tasks` tasks round-robin over `queues`. With `pacing` (steady mode): at `rate`
/// per second, and after `kill_after` tasks SIGKILL one child of the master, once.
async fn submit_all(
    transport: &Arc<dyn Transport>,
    queues: &[String],
    opts: &Options,
    log_path: &Path,
    pacing: Option<Pacing<'_>>,
) -> Result<()> {
    let pad = "x".repeat(opts.payload_bytes);
    let log = log_path.display().to_string();
    let start = Instant::now();
    let mut batch = Vec::with_capacity(SUBMIT_BATCH);
    for n in 0..opts.tasks {
        if let Some((rate, kill_after, master, kill_at)) = pacing {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            if n == kill_after
                && let Some(&child) = children_of(master).first()
            {
                let at = now_us();
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                    && let Ok(mut k) = kill_at.lock()
                {
                    *k = Some((child, at));
                }
            }
        }
        let mut payload = json!({"n": n, "bench_log": log, "bench_t": now_us()});
        if !pad.is_empty() {
            payload["pad"] = Value::String(pad.clone());
        }
        let payload = rex_transport::normalize_payload(payload)?;
        let queue = &queues[(n % queues.len() as u64) as usize];
        if pacing.is_some() {
            // Paced: each task on its own, when it is due.
            transport
                .submit(queue, payload, &SubmitOptions::default())
                .await?;
            SUBMITTED.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        // All at once: in batches, as `asynctask-submit -` sends them.
        batch.push(Submit {
            queue: queue.clone(),
            payload,
        });
        if batch.len() == SUBMIT_BATCH || n + 1 == opts.tasks {
            transport.submit_batch(&batch, None).await?;
            SUBMITTED.fetch_add(batch.len() as u64, Ordering::SeqCst);
            batch.clear();
        }
    }
    Ok(())
}

/// How many tasks the bench submits per batch when not pacing.
const SUBMIT_BATCH: usize = 500;

/// (pid, submitted µs, started µs, claim batch size) per processed task.
fn read_starts(path: &Path) -> Vec<(u32, u64, u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ').map(str::parse::<u64>);
            Some((
                f.next()?.ok()? as u32,
                f.next()?.ok()?,
                f.next()?.ok()?,
                f.next().and_then(Result::ok).unwrap_or(1),
            ))
        })
        .collect()
}

/// From the kill to the first task started by a process that did not exist before it.
fn restart_latency(starts: &[(u32, u64, u64, u64)], killed: u32, at_us: u64) -> Option<f64> {
    let before: std::collections::HashSet<u32> =
        starts.iter().filter(|s| s.2 < at_us).map(|s| s.0).collect();
    starts
        .iter()
        .filter(|s| s.2 >= at_us && s.0 != killed && !before.contains(&s.0))
        .map(|s| (s.2 - at_us) as f64 / 1000.0)
        .reduce(f64::min)
}

/// Tasks submitted so far by this process (done tasks are deleted, so the transport cannot
/// tell how many there were).
static SUBMITTED: AtomicU64 = AtomicU64::new(0);

/// A scratch directory, removed at the end.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        let tag: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(8)
            .collect();
        let path = std::env::temp_dir().join(format!("rex-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        // Its own project root: rex would otherwise take a rex.yaml above it (in a parent).
        std::fs::write(path.join("rex.yaml"), "")?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
