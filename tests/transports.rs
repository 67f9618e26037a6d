//! The networked transports end to end, with real `asynctask-workers` masters: the original
//! transcripts, two masters sharing one queue, and random SIGKILLs. Each runs once per
//! configured server (`REX_TEST_PGSQL`, `REX_TEST_REDIS`); without them the tests say what they
//! skipped and pass. Every run uses its own schema or key prefix.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rex_tests::{Project, Running, children_of};

const LIMIT: Duration = Duration::from_secs(120);

/// The configured servers, each isolated under a fresh namespace.
fn servers() -> Vec<(&'static str, String)> {
    let tag: String = std::iter::repeat_with(fastrand::lowercase).take(10).collect();
    let mut out = Vec::new();
    for (name, var, param) in [("pgsql", "REX_TEST_PGSQL", "schema"), ("redis", "REX_TEST_REDIS", "key_prefix")] {
        match std::env::var(var).ok().filter(|v| !v.is_empty()) {
            Some(uri) => {
                let sep = if uri.contains('?') { '&' } else { '?' };
                out.push((name, format!("{uri}{sep}{param}=rex_e2e_{tag}")));
            }
            None => eprintln!("{name}: skipped ({var} is not set)"),
        }
    }
    out
}

fn transport_set(uri: &str) -> String {
    format!("--set=asynctask_transport={uri}")
}

#[test]
fn the_original_transcripts_pass_on_every_transport() {
    for (name, uri) in servers() {
        eprintln!("{name}: running tests/transcripts/original.md");
        let artifacts = rex_tests::artifacts();
        trycmd::TestCases::new()
            .register_bin("rex", &artifacts.rex)
            .env("REX_PLUGIN_PATH", artifacts.plugin_dir.display().to_string())
            .env("REX_PARAMETERS", serde_json::json!({ "asynctask_transport": uri }).to_string())
            .case("transcripts/original.md")
            .run();
    }
}

/// (n -> times printed) from `SLEEP processed: {"ms":..,"n":N}` lines.
fn runs(lines: &[String]) -> BTreeMap<u64, usize> {
    let mut runs = BTreeMap::new();
    for line in lines {
        if let Some(json) = line.strip_prefix("SLEEP processed: ") {
            if let Some(n) = serde_json::from_str::<serde_json::Value>(json).ok().and_then(|v| v["n"].as_u64()) {
                *runs.entry(n).or_default() += 1;
            }
        }
    }
    runs
}

fn submit_numbered(project: &Project, uri: &str, queue: &str, n: u64, ms: impl Fn(u64) -> u64) {
    let lines: Vec<String> = (0..n).map(|i| format!(r#"{{"ms": {}, "n": {i}}}"#, ms(i))).collect();
    let mut child = project
        .rex(&["asynctask-submit", queue, "-", &transport_set(uri)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("submit");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        for l in &lines {
            writeln!(stdin, "{l}").expect("write");
        }
    }
    assert!(child.wait().expect("wait").success());
}

fn master(project: &Project, uri: &str, queues: &str) -> Running {
    Running::spawn(project.rex(&[
        "asynctask-workers",
        "--halt-when-empty",
        "--set=log_level=INFO",
        &transport_set(uri),
        &format!("--set=asynctask_workers={queues}"),
    ]))
}

#[test]
fn two_masters_share_a_queue_and_run_every_task_once() {
    for (name, uri) in servers() {
        let project = Project::demo();
        submit_numbered(&project, &uri, "shared", 2000, |_| 0);
        let queues = r#"{"foo": null, "shared": {"worker": "demo_sleep_worker", "concurrency": 2}}"#;
        let (a, b) = (master(&project, &uri, queues), master(&project, &uri, queues));
        let (code_a, lines_a) = a.finish(LIMIT);
        let (code_b, lines_b) = b.finish(LIMIT);
        assert_eq!((code_a, code_b), (Some(0), Some(0)), "{name}");
        let (runs_a, runs_b) = (runs(&lines_a), runs(&lines_b));
        let mut all = runs_a.clone();
        for (n, k) in &runs_b {
            *all.entry(*n).or_default() += k;
        }
        eprintln!("{name}: master A ran {}, master B ran {}", runs_a.len(), runs_b.len());
        assert_eq!(all.len(), 2000, "{name}: every task ran");
        assert!(all.values().all(|&k| k == 1), "{name}: a task ran twice");
        assert!(!runs_a.is_empty() && !runs_b.is_empty(), "{name}: both masters took work");
    }
}

#[test]
fn random_sigkills_across_two_masters_lose_nothing() {
    for (name, uri) in servers() {
        let project = Project::demo();
        submit_numbered(&project, &uri, "chaos", 2000, |i| 1 + i % 5);
        let queues = r#"{"foo": null, "chaos": {"worker": "demo_sleep_worker", "concurrency": 2, "max_attempts": 3, "retry_delay_min": "10ms", "retry_delay_max": "50ms"}}"#;
        let mut masters = [master(&project, &uri, queues), master(&project, &uri, queues)];
        let mut kills = 0;
        loop {
            let mut live = Vec::new();
            let mut running = 0;
            for m in masters.iter_mut() {
                if m.child.try_wait().ok().flatten().is_none() {
                    running += 1;
                    live.extend(children_of(m.pid()));
                }
            }
            if running == 0 {
                break;
            }
            // Chaos pacing, not synchronisation.
            std::thread::sleep(Duration::from_millis(100));
            if !live.is_empty() && kill(Pid::from_raw(live[fastrand::usize(..live.len())]), Signal::SIGKILL).is_ok() {
                kills += 1;
            }
        }
        let [a, b] = masters;
        let (_, lines_a) = a.finish(LIMIT);
        let (_, lines_b) = b.finish(LIMIT);
        let mut processed = runs(&lines_a);
        processed.extend(runs(&lines_b));
        let failed_out = project.ok(&["asynctask-failed", "--queue=chaos", "--json", &transport_set(&uri)]);
        let failed: Vec<serde_json::Value> = serde_json::from_str(&failed_out).expect("json");
        let failed_ids: Vec<u64> = failed.iter().filter_map(|t| t["payload"]["n"].as_u64()).collect();
        let lost: Vec<u64> = (0..2000).filter(|n| !processed.contains_key(n) && !failed_ids.contains(n)).collect();
        eprintln!("{name}: 2000 tasks, {kills} SIGKILLs, {} processed, {} failed, {} lost", processed.len(), failed_ids.len(), lost.len());
        assert!(lost.is_empty(), "{name}: lost {lost:?}");
    }
}
