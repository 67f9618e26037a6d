//! Throughput history end to end: a real master drains queues whose tasks succeed, fail for
//! good and crash their child; the dashboard's `/api/history` then shows each outcome once,
//! per queue, in the minutes they happened. (How each transport stores the history is the
//! conformance suite's `case_history_adds_up`.)

use rex_tests::Project;
use rex_tests::console::Dashboard;

#[test]
fn each_outcome_is_counted_once_in_the_history_of_its_queue() {
    let project = Project::new(
        "project: rex.asynctask_demo\nparameters:\n  log_level: INFO\n  asynctask_workers:\n    oops:\n      worker: demo_error_worker\n      max_attempts: 1\n    fragile:\n      worker: demo_fragile_worker\n",
    );
    project.submit(
        "oops",
        &[r#"{"error": true}"#, r#"{"n": 1}"#, r#"{"n": 2}"#],
    );
    project.submit("fragile", &[r#"{"die": true}"#, r#"{"n": 3}"#]);
    let (code, out, err) = project.run(&["asynctask-workers", "--halt-when-empty"]);
    assert_eq!(code, 0, "workers:\n{out}\n{err}");

    let console = Dashboard::start(&project, &[]);
    let sums = |queue: &str| {
        let body = console.get(&format!("/api/history?queue={queue}&minutes=60"));
        let history: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let minutes = history["minutes"].as_array().cloned().unwrap_or_default();
        assert_eq!(minutes.len(), 60, "{body}");
        let sum = |field: &str| {
            minutes
                .iter()
                .map(|m| m[field].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let timed = minutes.iter().any(|m| m["run_mean_ms"].is_number());
        (
            [
                sum("processed"),
                sum("succeeded"),
                sum("retried"),
                sum("failed"),
                sum("crashed"),
            ],
            timed,
        )
    };
    assert_eq!(
        sums("oops"),
        ([3, 2, 0, 1, 0], true),
        "the panic failed for good"
    );
    assert_eq!(
        sums("fragile"),
        ([2, 1, 0, 0, 1], true),
        "the exit is a crash"
    );
    let svg = console.get("/charts/throughput.svg");
    let drawn: u64 = svg
        .split(r#"data-total=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(drawn, 5, "the chart of every queue draws all 5: {svg}");
}
