//! What the bench shows: percentiles, the report (text or `--json`) and the progress line.

use super::*;

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

/// The mean size of the batch a task came in (weighted by task, as a task sees it).
fn batch_mean(sizes: &[u64]) -> Option<f64> {
    (!sizes.is_empty()).then(|| sizes.iter().sum::<u64>() as f64 / sizes.len() as f64)
}

pub(super) fn print_report(r: &Report, opts: &Options) {
    let mut lat = r.latencies_us.clone();
    lat.sort_unstable();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let rate = |s: f64| if s > 0.0 { opts.tasks as f64 / s } else { 0.0 };
    let drain_rate = rate(r.drain_s);
    if opts.json {
        let v = json!({
            "transport": r.transport,
            "mode": match opts.mode {
                Mode::BurnDown => "burn-down",
                Mode::Steady => "steady",
                Mode::Soak(_) => "soak",
            },
            "tasks": opts.tasks, "queues": opts.queues, "concurrency": opts.concurrency,
            "payload_bytes": opts.payload_bytes,
            "processed": r.processed,
            "submit_s": r.submit_s, "submit_per_s": rate(r.submit_s),
            "drain_s": r.drain_s, "drain_per_s": drain_rate,
            "end_to_end_s": r.end_to_end_s, "end_to_end_per_s": rate(r.end_to_end_s),
            "latency_p50_ms": p50, "latency_p99_ms": p99,
            "restart_ms": r.restart_ms,
            "master_peak_rss_kb": r.master_rss_kb, "child_peak_rss_kb": r.child_rss_kb,
            "prefetch": opts.prefetch,
            "batch_mean": batch_mean(&r.batch_sizes),
            "batch_max": r.batch_sizes.iter().max(),
            "bare_sqlite_per_s": r.bare_rate,
            "drain_vs_bare": r.bare_rate.map(|b| drain_rate / b),
            "samples": r.samples,
            "drift": soak::drift(&r.samples),
        });
        println!("{v}");
        return;
    }
    let mode = match opts.mode {
        Mode::BurnDown => "burn-down".to_string(),
        Mode::Steady => format!("steady at {}/s", opts.rate),
        Mode::Soak(plan) => format!(
            "soak at {}/s for {:.0} s, a child killed every {}",
            opts.rate,
            plan.duration.as_secs_f64(),
            plan.restart_every
                .map_or("(never)".to_string(), |d| format!(
                    "{:.1} s",
                    d.as_secs_f64()
                ))
        ),
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
    if let Some(mean) = batch_mean(&r.batch_sizes) {
        println!(
            "claim batches          mean {mean:.1} tasks per task's batch, largest {} (prefetch {})",
            r.batch_sizes.iter().max().copied().unwrap_or(0),
            opts.prefetch
        );
    }
    if let Some(bare) = r.bare_rate {
        println!(
            "bare rusqlite loop     {bare:.0} tasks/s in batches of {} (drain = {:.0} % of it)",
            opts.prefetch,
            100.0 * drain_rate / bare
        );
    }
    if !r.samples.is_empty() {
        soak::print_samples(&r.samples);
    }
    println!("processed {} of {}", r.processed, opts.tasks);
}

/// A progress bar on a terminal, a line per second otherwise; nothing with `--json`.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    plain: bool,
    last: std::sync::Mutex<Instant>,
}

impl Progress {
    pub(super) fn new(total: u64, json: bool) -> Progress {
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

    pub(super) fn set(&self, done: u64) {
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

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
