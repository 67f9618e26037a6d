//! The master under measurement: `rex asynctask-workers` started in a scratch directory,
//! its children found through `/proc`, their peak memory read from `VmHWM`.

use super::*;

/// A master process under measurement.
pub(super) struct Master {
    pub(super) child: std::process::Child,
    pub(super) master_rss_kb: u64,
    pub(super) child_rss_kb: u64,
}

impl Master {
    pub(super) fn spawn(
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
                let config = json!({"worker": BENCH_WORKER, "concurrency": opts.concurrency,
                                    "prefetch": opts.prefetch, "max_attempts": 3,
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

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn sample_rss(&mut self) {
        self.master_rss_kb = self.master_rss_kb.max(peak_rss_kb(self.pid()));
        for c in children_of(self.pid()) {
            self.child_rss_kb = self.child_rss_kb.max(peak_rss_kb(c));
        }
    }

    pub(super) fn wait_children(&mut self, n: usize) -> Result<()> {
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
    pub(super) fn watch(
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
                let remaining = unfinished(rt, transport, queues)?;
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

    pub(super) fn stop(&mut self) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.sample_rss();
        self.child.wait()?;
        Ok(())
    }
}

/// Tasks of `queues` not finished yet (ready, delayed or running).
pub(super) fn unfinished(
    rt: &tokio::runtime::Runtime,
    transport: &Arc<dyn Transport>,
    queues: &[String],
) -> Result<u64> {
    let n = rt.block_on(async {
        let mut n = 0;
        for q in queues {
            let c = transport.counts(q).await?;
            n += c.ready + c.delayed + c.running;
        }
        Ok::<_, rex_transport::TransportError>(n)
    })?;
    Ok(n)
}

pub(super) fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`); 0 when the process is gone.
pub(super) fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

pub(super) fn children_of(parent: u32) -> Vec<u32> {
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
