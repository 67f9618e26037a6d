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
        "FATAL ERROR: Expected one of:\n    burn-down, steady\nGot:\n    sideways\nWhile parsing option:\n    --mode\n"
    );
}
