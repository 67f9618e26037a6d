//! `--mode soak`: a long steady run that watches resources rather than speed. Tasks are
//! submitted at `--rate` for `--duration` while a child is SIGKILLed every `--restart-every`;
//! the master's and the children's resident memory and open file descriptors are sampled over
//! time, so that a leak shows as a slope (a week's leak shows within hours).

use super::*;

/// One look at the processes.
#[derive(Clone, Debug, serde::Serialize)]
pub(super) struct Sample {
    pub at_s: f64,
    /// Tasks done so far.
    pub done: u64,
    /// Children SIGKILLed so far.
    pub restarts: u64,
    pub master_rss_kb: u64,
    pub master_fds: u64,
    pub children: usize,
    /// The largest child's.
    pub child_rss_kb: u64,
    pub child_fds: u64,
}

/// What a soak is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SoakPlan {
    pub duration: Duration,
    pub restart_every: Option<Duration>,
}

impl SoakPlan {
    /// About twenty samples per run, at least one every 100 ms and at most one a minute.
    fn interval(&self) -> Duration {
        (self.duration / 20).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }
}

/// Current resident memory (`VmRSS`, kB) and open descriptors of `pid`.
fn resources(pid: u32) -> (u64, u64) {
    let rss = super::master::status_kb(pid, "VmRSS:");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (rss, fds)
}

impl Master {
    /// Sample and restart children until `total` tasks are done; returns the samples.
    pub(super) fn soak(
        &mut self,
        rt: &tokio::runtime::Runtime,
        transport: &Arc<dyn Transport>,
        queues: &[String],
        total: u64,
        plan: SoakPlan,
        progress: &Progress,
    ) -> Result<Vec<Sample>> {
        let start = Instant::now();
        let mut samples = Vec::new();
        let mut restarts = 0u64;
        let mut next_sample = start;
        let mut next_restart = plan.restart_every.map(|every| start + every);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(Error::new(format!("asynctask-workers ended with {status}")));
            }
            let now = Instant::now();
            if next_restart.is_some_and(|at| now >= at) {
                // The oldest child: over a long run every slot gets restarted.
                if let Some(&child) = children_of(self.pid()).first()
                    && nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(child as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    )
                    .is_ok()
                {
                    restarts += 1;
                }
                next_restart = plan.restart_every.map(|every| now + every);
            }
            if now >= next_sample {
                next_sample = now + plan.interval();
                let remaining = unfinished(rt, transport, queues)?;
                let submitted = SUBMITTED.load(Ordering::SeqCst);
                let done = submitted.saturating_sub(remaining);
                progress.set(done);
                let (master_rss_kb, master_fds) = resources(self.pid());
                let children: Vec<(u64, u64)> =
                    children_of(self.pid()).into_iter().map(resources).collect();
                samples.push(Sample {
                    at_s: start.elapsed().as_secs_f64(),
                    done,
                    restarts,
                    master_rss_kb,
                    master_fds,
                    children: children.len(),
                    child_rss_kb: children.iter().map(|c| c.0).max().unwrap_or(0),
                    child_fds: children.iter().map(|c| c.1).max().unwrap_or(0),
                });
                self.sample_rss();
                if done >= total && submitted >= total {
                    return Ok(samples);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How the resources moved: the last sample against the first one taken after the warm-up
/// (the first tenth of the run), so start-up allocation is not read as a leak.
pub(super) fn drift(samples: &[Sample]) -> Value {
    let Some(last) = samples.last() else {
        return Value::Null;
    };
    let warm = samples
        .iter()
        .find(|s| s.at_s >= last.at_s / 10.0)
        .unwrap_or(last);
    let delta = |a: u64, b: u64| b as i64 - a as i64;
    json!({
        "from_s": warm.at_s, "to_s": last.at_s,
        "master_rss_kb": delta(warm.master_rss_kb, last.master_rss_kb),
        "master_fds": delta(warm.master_fds, last.master_fds),
        "child_rss_kb": delta(warm.child_rss_kb, last.child_rss_kb),
        "child_fds": delta(warm.child_fds, last.child_fds),
    })
}

/// The samples as a table (text report).
pub(super) fn print_samples(samples: &[Sample]) {
    println!("soak        time     done  restarts  master RSS  fds  children  child RSS  fds");
    for s in samples {
        println!(
            "        {:>7.1}s {:>8} {:>9} {:>8.1} MB {:>4} {:>9} {:>7.1} MB {:>4}",
            s.at_s,
            s.done,
            s.restarts,
            s.master_rss_kb as f64 / 1024.0,
            s.master_fds,
            s.children,
            s.child_rss_kb as f64 / 1024.0,
            s.child_fds
        );
    }
    println!("drift       {}", drift(samples));
}
