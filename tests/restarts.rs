//! Server restarts mid-run: workers recover by themselves and lose nothing. A binary of its
//! own, so no other test shares a server while it restarts.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rex_tests::Project;
use rex_tests::networked::{master, runs, servers, submit_numbered, transport_set};

const LIMIT: Duration = Duration::from_secs(120);

/// Run 1,000 tasks through one master, restart the server once 100 of them are done, and check
/// that the workers recovered by themselves and nothing was lost.
fn survive_restart(name: &str, uri: &str, restart: impl FnOnce()) {
    let project = Project::demo();
    submit_numbered(&project, uri, "restart", 1000, |_| 2);
    let queues = r#"{"foo": null, "restart": {"worker": "demo_sleep_worker", "max_attempts": 3, "retry_delay_min": "10ms", "retry_delay_max": "100ms"}}"#;
    let mut m = master(&project, uri, queues);
    for _ in 0..100 {
        m.wait_for(LIMIT, |l| l.starts_with("SLEEP processed: "));
    }
    restart();
    let (code, lines) = m.finish(LIMIT);
    let processed = runs(&lines);
    let failed_out = project.ok(&[
        "asynctask-failed",
        "--queue=restart",
        "--json",
        &transport_set(uri),
    ]);
    let failed: Vec<serde_json::Value> = serde_json::from_str(&failed_out).expect("json");
    let failed_ids: Vec<u64> = failed
        .iter()
        .filter_map(|t| t["payload"]["n"].as_u64())
        .collect();
    let lost: Vec<u64> = (0..1000)
        .filter(|n| !processed.contains_key(n) && !failed_ids.contains(n))
        .collect();
    let errors = lines
        .iter()
        .filter(|l| l.contains("Transport") || l.contains("unavailable"))
        .count();
    eprintln!(
        "{name} restart: 1000 tasks, {} processed, {} failed, {} lost, {errors} transport error lines",
        processed.len(),
        failed_ids.len(),
        lost.len()
    );
    assert_eq!(code, Some(0), "{name}: {}", lines.join("\n"));
    assert!(lost.is_empty(), "{name}: lost {lost:?}");
}

/// Restart the shared server named `name` with the command in `variable` (set by `.ci/run`);
/// skipped without it, so a developer's server is never restarted by surprise.
fn restart_shared_server(name: &str, variable: &str) {
    let Some(command) = std::env::var(variable).ok().filter(|c| !c.is_empty()) else {
        eprintln!("{name} restart: skipped ({variable} is not set)");
        return;
    };
    let Some((name, uri)) = servers().into_iter().find(|(n, _)| *n == name) else {
        return;
    };
    survive_restart(name, &uri, || {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .status()
            .expect("run the restart command");
        assert!(status.success(), "{command} failed");
    });
}

/// PostgreSQL: the real cluster, restarted with `REX_TEST_PGSQL_RESTART`.
#[test]
fn postgresql_restart_mid_run_loses_nothing() {
    restart_shared_server("pgsql", "REX_TEST_PGSQL_RESTART");
}

/// RabbitMQ: the real node, restarted with `REX_TEST_AMQP_RESTART` (durable queues and
/// persistent messages survive it; every connection is dropped).
#[test]
fn rabbitmq_restart_mid_run_loses_nothing() {
    restart_shared_server("amqp", "REX_TEST_AMQP_RESTART");
}

/// Redis: a private server on a free port with an append-only file (so a restart keeps the
/// data, as a production Redis holding tasks must), stopped and started again mid-run.
#[test]
fn redis_restart_mid_run_loses_nothing() {
    if servers().iter().all(|(n, _)| *n != "redis") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("addr").port()
    };
    let start = || {
        let mut server = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args(["--appendfsync", "always", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-server");
        // Ready when it says so on its log: a message, not a sleep.
        let stdout = server.stdout.take().expect("stdout");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains("Ready to accept connections"))),
            "redis-server did not start"
        );
        std::thread::spawn(move || lines.for_each(drop));
        server
    };
    let mut server = start();
    let uri = format!("redis://127.0.0.1:{port}/0");
    survive_restart("redis", &uri, || {
        let _ = kill(Pid::from_raw(server.id() as i32), Signal::SIGTERM);
        let _ = server.wait();
        server = start();
    });
    let _ = kill(Pid::from_raw(server.id() as i32), Signal::SIGTERM);
    let _ = server.wait();
}
