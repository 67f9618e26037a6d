//! `rex asynctask-bench` is checked for correctness (counts and report fields), never speed.

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(&rex_tests::artifacts().rex)
        .arg("asynctask-bench")
        .args(args)
        .arg("--json")
        .env_remove("REX_PROJECT")
        .output()
        .expect("run the bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

#[test]
fn burn_down_processes_every_task_and_reports_the_rates() {
    let r = bench(&[
        "--tasks",
        "300",
        "--queues",
        "2",
        "--concurrency",
        "2",
        "--payload-bytes",
        "64",
    ]);
    assert_eq!(r["processed"], 300);
    assert_eq!(r["mode"], "burn-down");
    for field in [
        "submit_per_s",
        "drain_per_s",
        "end_to_end_per_s",
        "bare_sqlite_per_s",
        "drain_vs_bare",
    ] {
        assert!(r[field].as_f64().is_some_and(|v| v > 0.0), "{field}: {r}");
    }
    assert!(
        r["master_peak_rss_kb"].as_u64().is_some_and(|kb| kb > 0),
        "{r}"
    );
    assert!(
        r["child_peak_rss_kb"].as_u64().is_some_and(|kb| kb > 0),
        "{r}"
    );
}

#[test]
fn steady_mode_measures_latency_and_a_restart() {
    let r = bench(&["--mode", "steady", "--tasks", "200", "--rate", "400"]);
    assert_eq!(
        r["processed"], 200,
        "no task is lost to the SIGKILL half-way: {r}"
    );
    assert!(
        r["latency_p50_ms"].as_f64().is_some() && r["latency_p99_ms"].as_f64().is_some(),
        "{r}"
    );
    assert!(
        r["restart_ms"].as_f64().is_some(),
        "the killed child was replaced and took a task: {r}"
    );
}

#[test]
fn bad_options_are_fatal_errors() {
    let out = Command::new(&rex_tests::artifacts().rex)
        .args(["asynctask-bench", "--mode", "sideways"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "FATAL ERROR: Expected one of:\n    burn-down, steady, soak\nGot:\n    sideways\nWhile parsing option:\n    --mode\n"
    );
}

/// A small soak with children SIGKILLed over and over: no descriptor is leaked by a restart
/// (the master's count stays flat, each new child opens as many as the first), and every
/// task is processed. Counts, not times, are checked.
#[test]
fn soak_restarts_children_without_leaking_descriptors() {
    let r = bench(&[
        "--mode",
        "soak",
        "--duration",
        "3s",
        "--rate",
        "200",
        "--restart-every",
        "300ms",
    ]);
    assert_eq!(r["mode"], "soak");
    assert_eq!(r["processed"], r["tasks"], "{r}");
    let samples = r["samples"].as_array().expect("samples");
    let last = samples.last().expect("a sample");
    assert!(last["restarts"].as_u64().is_some_and(|n| n >= 3), "{r}");
    // A leak grows with the restarts: the last third of the run would never come back down
    // to the first third's level. Transient descriptors (a child being replaced, starting up)
    // only raise a maximum or lower a minimum, which this comparison tolerates.
    let running: Vec<&serde_json::Value> = samples
        .iter()
        .filter(|s| s["done"].as_u64() > Some(0))
        .collect();
    assert!(running.len() >= 6, "{r}");
    let third = running.len() / 3;
    for name in ["master_fds", "child_fds"] {
        let counts: Vec<u64> = running.iter().filter_map(|s| s[name].as_u64()).collect();
        let early = counts[..third].iter().max();
        let late = counts[counts.len() - third..].iter().min();
        assert!(late <= early, "{name} grow over the restarts: {counts:?}");
    }
}
