//! `rex asynctask-bench`: measures a transport through real `asynctask-workers` processes.
//!
//! The bench submits tasks for the built-in `bench_worker` (a no-op that appends
//! `<pid> <submitted µs> <started µs>` to a file when its payload asks), runs a real master
//! (`rex asynctask-workers rex.asynctask`, in a scratch directory so no project settings
//! interfere), and reports:
//!
//! * submit rate (one `submit` per task, as clients do),
//! * drain rate (master start to last task done) and end-to-end rate,
//! * submit->start latency p50/p99 (`--mode steady`: tasks submitted at `--rate` while the
//!   workers run, so latency is not queueing),
//! * restart latency (steady mode: a child is SIGKILLed half-way; time until a new child
//!   starts a task),
//! * peak RSS of the master and of the largest child (`VmHWM`),
//! * for SQLite, the rate of a bare rusqlite loop doing the same claim+ack statements, and the
//!   ratio to it.
//!
//! Sampling loops here (progress, RSS) are measurement, not synchronisation.

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
use rex_transport::{SubmitOptions, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    BurnDown,
    Steady,
}

struct Options {
    transport: Option<String>,
    tasks: u64,
    queues: u32,
    concurrency: u32,
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
    let mode = match parsed.value("mode").as_deref() {
        None | Some("burn-down") => Mode::BurnDown,
        Some("steady") => Mode::Steady,
        Some(other) => {
            return Err(Error::with_body("Expected one of:", "burn-down, steady")
                .context("Got:", other.to_string())
                .context("While parsing option:", "--mode"));
        }
    };
    Ok(Options {
        transport: parsed.value("transport"),
        tasks: number("tasks", 10_000)?,
        queues: u32::try_from(number("queues", 1)?).unwrap_or(u32::MAX),
        concurrency: u32::try_from(number("concurrency", 1)?).unwrap_or(u32::MAX),
        payload_bytes: match parsed.value("payload-bytes") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                Error::new("--payload-bytes expects a non-negative integer").context("Got:", v)
            })?,
        },
        mode,
        rate: number("rate", 500)?,
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
    restart_ms: Option<f64>,
    master_rss_kb: u64,
    child_rss_kb: u64,
    bare_rate: Option<f64>,
}

pub fn task(parsed: &Parsed) -> Result<i32> {
    let opts = options(parsed)?;
    let scratch = Scratch::new()?;
    let uri = match &opts.transport {
        Some(uri) => uri.clone(),
        None => format!("sqlite:{}", scratch.path.join("bench.db").display()),
    };
    let transport = rex_transport::open(&uri)?;
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
        }
        Mode::Steady => {
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
                move || -> Result<f64> {
                    let pacing = Some((rate, tasks / 2, master_pid, kill_at));
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
                let watched = master.watch(&rt, &transport, &queues, opts.tasks, &progress);
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
        transport
            .submit(queue, payload, &SubmitOptions::default())
            .await?;
        SUBMITTED.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

/// (pid, submitted µs, started µs) per processed task.
fn read_starts(path: &Path) -> Vec<(u32, u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ').map(str::parse::<u64>);
            Some((f.next()?.ok()? as u32, f.next()?.ok()?, f.next()?.ok()?))
        })
        .collect()
}

/// From the kill to the first task started by a process that did not exist before it.
fn restart_latency(starts: &[(u32, u64, u64)], killed: u32, at_us: u64) -> Option<f64> {
    let before: std::collections::HashSet<u32> =
        starts.iter().filter(|s| s.2 < at_us).map(|s| s.0).collect();
    starts
        .iter()
        .filter(|s| s.2 >= at_us && s.0 != killed && !before.contains(&s.0))
        .map(|s| (s.2 - at_us) as f64 / 1000.0)
        .reduce(f64::min)
}

/// A master process under measurement.
struct Master {
    child: std::process::Child,
    master_rss_kb: u64,
    child_rss_kb: u64,
}

impl Master {
    fn spawn(
        uri: &str,
        queues: &[String],
        opts: &Options,
        dir: &Path,
        halt: bool,
    ) -> Result<Master> {
        let workers: serde_json::Map<String, Value> = queues
            .iter()
            // Retries: a task hit by the restart measurement's SIGKILL is run again, not lost.
            .map(|q| {
                let config = json!({"worker": BENCH_WORKER, "concurrency": opts.concurrency, "max_attempts": 3,
                                    "retry_delay_min": "10ms", "retry_delay_max": "10ms"});
                (q.clone(), config)
            })
            .collect();
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("asynctask-workers")
            .arg("rex.asynctask")
            .arg("--quiet")
            .arg(format!("--set=asynctask_transport={uri}"))
            .arg(format!(
                "--set=asynctask_workers={}",
                Value::Object(workers)
            ))
            .current_dir(dir)
            .env_remove("REX_PROJECT")
            .env_remove("REX_PARAMETERS")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if halt {
            cmd.arg("--halt-when-empty");
        }
        let child = cmd.spawn()?;
        Ok(Master {
            child,
            master_rss_kb: 0,
            child_rss_kb: 0,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sample_rss(&mut self) {
        self.master_rss_kb = self.master_rss_kb.max(peak_rss_kb(self.pid()));
        for c in children_of(self.pid()) {
            self.child_rss_kb = self.child_rss_kb.max(peak_rss_kb(c));
        }
    }

    fn wait_children(&mut self, n: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while children_of(self.pid()).len() < n {
            if Instant::now() > deadline || self.child.try_wait()?.is_some() {
                return Err(Error::new("the workers did not start"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Until the master exits (burn-down) or every task is done (steady): sample RSS and
    /// progress.
    fn watch(
        &mut self,
        rt: &tokio::runtime::Runtime,
        transport: &Arc<dyn Transport>,
        queues: &[String],
        total: u64,
        progress: &Progress,
    ) -> Result<()> {
        let mut last_count = Instant::now() - Duration::from_secs(1);
        loop {
            self.sample_rss();
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    return Err(Error::new(format!("asynctask-workers ended with {status}")));
                }
                return Ok(());
            }
            if last_count.elapsed() >= Duration::from_millis(100) {
                last_count = Instant::now();
                let remaining = rt.block_on(async {
                    let mut n = 0;
                    for q in queues {
                        let c = transport.counts(q).await?;
                        n += c.ready + c.delayed + c.running;
                    }
                    Ok::<_, rex_transport::TransportError>(n)
                })?;
                let submitted = SUBMITTED.load(Ordering::SeqCst);
                let done = submitted.saturating_sub(remaining);
                progress.set(done);
                if done >= total && submitted >= total {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.sample_rss();
        self.child.wait()?;
        Ok(())
    }
}

/// Tasks submitted so far by this process (done tasks are deleted, so the transport cannot
/// tell how many there were).
static SUBMITTED: AtomicU64 = AtomicU64::new(0);

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|stat| {
                    let after = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
                    let mut f = after.split(' ');
                    let state = f.next();
                    state != Some("Z")
                        && f.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent)
                })
        })
        .collect()
}

/// The ceiling for the SQLite transport without batching: one transaction per task that acks
/// the previous task and claims the next, with the transport's own kind of statements.
fn bare_sqlite_rate(path: &Path, n: u64) -> Result<f64> {
    let db = |e: rusqlite::Error| Error::new(format!("bare SQLite loop: {e}"));
    let _ = std::fs::remove_file(path);
    let mut conn = rusqlite::Connection::open(path).map_err(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, payload TEXT NOT NULL,
             state TEXT NOT NULL, run_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
             lease_token INTEGER NOT NULL DEFAULT 0, owner TEXT, lease_until INTEGER);
         CREATE INDEX tasks_by_queue ON tasks (queue, state, id);",
    )
    .map_err(db)?;
    {
        let tx = conn.transaction().map_err(db)?;
        {
            let mut insert = tx
                .prepare("INSERT INTO tasks (queue, payload, state, run_at) VALUES ('q', ?1, 'pending', 0)")
                .map_err(db)?;
            for i in 0..n {
                insert.execute([format!("{{\"n\":{i}}}")]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
    }
    let start = Instant::now();
    let mut previous: Option<i64> = None;
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        if let Some(id) = previous {
            tx.prepare_cached("DELETE FROM tasks WHERE id = ?1 AND lease_token = 1")
                .map_err(db)?
                .execute([id])
                .map_err(db)?;
        }
        let claimed: Option<(i64, String)> = tx
            .prepare_cached(
                "UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
                     owner = 'bench', lease_until = ?1
                 WHERE id = (SELECT id FROM tasks WHERE queue = 'q' AND state = 'pending' AND run_at <= ?1 ORDER BY id LIMIT 1)
                 RETURNING id, payload",
            )
            .map_err(db)?
            .query_row([now_us() as i64 / 1000 + 60_000], |r| Ok((r.get(0)?, r.get(1)?)))
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .map_err(db)?;
        tx.commit().map_err(db)?;
        match claimed {
            Some((id, payload)) => {
                let _: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
                previous = Some(id);
            }
            None => break,
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

fn print_report(r: &Report, opts: &Options) {
    let mut lat = r.latencies_us.clone();
    lat.sort_unstable();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let rate = |s: f64| if s > 0.0 { opts.tasks as f64 / s } else { 0.0 };
    let drain_rate = rate(r.drain_s);
    if opts.json {
        let v = json!({
            "transport": r.transport,
            "mode": if opts.mode == Mode::Steady { "steady" } else { "burn-down" },
            "tasks": opts.tasks, "queues": opts.queues, "concurrency": opts.concurrency,
            "payload_bytes": opts.payload_bytes,
            "processed": r.processed,
            "submit_s": r.submit_s, "submit_per_s": rate(r.submit_s),
            "drain_s": r.drain_s, "drain_per_s": drain_rate,
            "end_to_end_s": r.end_to_end_s, "end_to_end_per_s": rate(r.end_to_end_s),
            "latency_p50_ms": p50, "latency_p99_ms": p99,
            "restart_ms": r.restart_ms,
            "master_peak_rss_kb": r.master_rss_kb, "child_peak_rss_kb": r.child_rss_kb,
            "bare_sqlite_per_s": r.bare_rate,
            "drain_vs_bare": r.bare_rate.map(|b| drain_rate / b),
        });
        println!("{v}");
        return;
    }
    let mode = if opts.mode == Mode::Steady {
        format!("steady at {}/s", opts.rate)
    } else {
        "burn-down".into()
    };
    println!(
        "{}: {} tasks, {} queue(s) x {} child(ren), payload {} B, {mode}",
        r.transport, opts.tasks, opts.queues, opts.concurrency, opts.payload_bytes
    );
    println!(
        "submit      {:>9.3} s  {:>10.0} tasks/s",
        r.submit_s,
        rate(r.submit_s)
    );
    println!(
        "drain       {:>9.3} s  {:>10.0} tasks/s",
        r.drain_s, drain_rate
    );
    println!(
        "end to end  {:>9.3} s  {:>10.0} tasks/s",
        r.end_to_end_s,
        rate(r.end_to_end_s)
    );
    if let (Some(p50), Some(p99)) = (p50, p99) {
        println!("submit->start latency  p50 {p50:.2} ms  p99 {p99:.2} ms");
    }
    if let Some(ms) = r.restart_ms {
        println!("restart latency        {ms:.1} ms (SIGKILL to the new child's first task)");
    }
    println!(
        "peak RSS               master {:.1} MB, child {:.1} MB",
        r.master_rss_kb as f64 / 1024.0,
        r.child_rss_kb as f64 / 1024.0
    );
    if let Some(bare) = r.bare_rate {
        println!(
            "bare rusqlite loop     {bare:.0} tasks/s (drain = {:.0} % of it)",
            100.0 * drain_rate / bare
        );
    }
    println!("processed {} of {}", r.processed, opts.tasks);
}

/// A progress bar on a terminal, a line per second otherwise; nothing with `--json`.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    plain: bool,
    last: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(total: u64, json: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (tty && !json).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} tasks {per_sec} {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            plain: !tty && !json,
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if self.plain
            && let Ok(mut last) = self.last.lock()
            && last.elapsed() >= Duration::from_secs(1)
        {
            *last = Instant::now();
            eprintln!("processed {done}/{}", self.total);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

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
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
