//! The networked transports end to end, with real `asynctask-workers` masters: the original
//! transcripts, two masters sharing one queue, and random SIGKILLs. Each runs once per
//! configured server (`REX_TEST_PGSQL`, `REX_TEST_REDIS`, `REX_TEST_AMQP`, and their `_TLS`
//! endpoints); without them the tests say what they skipped and pass. Every run uses its own schema or key prefix.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rex_tests::networked::{master, runs, servers, submit_numbered, tls_servers, transport_set};
use rex_tests::{Project, Running, children_of};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn the_original_transcripts_pass_on_every_transport() {
    for (name, uri) in servers() {
        eprintln!("{name}: running tests/transcripts/original.md");
        let artifacts = rex_tests::artifacts();
        trycmd::TestCases::new()
            .register_bin("rex", &artifacts.rex)
            .env(
                "REX_PLUGIN_PATH",
                artifacts.plugin_dir.display().to_string(),
            )
            .env(
                "REX_PARAMETERS",
                serde_json::json!({ "asynctask_transport": uri }).to_string(),
            )
            .case("transcripts/original.md")
            .run();
    }
}

/// Over TLS (certificates checked, client certificates where the server asks for them): the
/// submitting command, the master and its children all connect, and every task runs once.
#[test]
fn a_drain_over_tls_runs_every_task_once() {
    for (name, uri) in tls_servers() {
        let project = Project::demo();
        submit_numbered(&project, &uri, "sealed", 200, |_| 0);
        let queues =
            r#"{"foo": null, "sealed": {"worker": "demo_sleep_worker", "concurrency": 2}}"#;
        let started = std::time::Instant::now();
        let (code, lines) = master(&project, &uri, queues).finish(LIMIT);
        assert_eq!(code, Some(0), "{name}: {}", lines.join("\n"));
        let ran = runs(&lines);
        eprintln!(
            "{name} over TLS: {} of 200 tasks ran ({:?})",
            ran.len(),
            started.elapsed()
        );
        assert_eq!(ran.len(), 200, "{name}: every task ran");
        assert!(ran.values().all(|&k| k == 1), "{name}: a task ran twice");
    }
}

#[test]
fn two_masters_share_a_queue_and_run_every_task_once() {
    for (name, uri) in servers() {
        let project = Project::demo();
        // A millisecond each: with batched claims, no-op tasks are all gone before the
        // second master has started, and the test is about sharing.
        submit_numbered(&project, &uri, "shared", 2000, |_| 1);
        let queues =
            r#"{"foo": null, "shared": {"worker": "demo_sleep_worker", "concurrency": 2}}"#;
        let (a, b) = (
            master(&project, &uri, queues),
            master(&project, &uri, queues),
        );
        let (code_a, lines_a) = a.finish(LIMIT);
        let (code_b, lines_b) = b.finish(LIMIT);
        assert_eq!((code_a, code_b), (Some(0), Some(0)), "{name}");
        let (runs_a, runs_b) = (runs(&lines_a), runs(&lines_b));
        let mut all = runs_a.clone();
        for (n, k) in &runs_b {
            *all.entry(*n).or_default() += k;
        }
        eprintln!(
            "{name}: master A ran {}, master B ran {}",
            runs_a.len(),
            runs_b.len()
        );
        assert_eq!(all.len(), 2000, "{name}: every task ran");
        assert!(all.values().all(|&k| k == 1), "{name}: a task ran twice");
        assert!(
            !runs_a.is_empty() && !runs_b.is_empty(),
            "{name}: both masters took work"
        );
    }
}

#[test]
fn random_sigkills_across_two_masters_lose_nothing() {
    for (name, uri) in servers() {
        let project = Project::demo();
        submit_numbered(&project, &uri, "chaos", 2000, |i| 1 + i % 5);
        let queues = r#"{"foo": null, "chaos": {"worker": "demo_sleep_worker", "concurrency": 2, "max_attempts": 3, "retry_delay_min": "10ms", "retry_delay_max": "50ms"}}"#;
        let mut masters = [
            master(&project, &uri, queues),
            master(&project, &uri, queues),
        ];
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
            if !live.is_empty()
                && kill(
                    Pid::from_raw(live[fastrand::usize(..live.len())]),
                    Signal::SIGKILL,
                )
                .is_ok()
            {
                kills += 1;
            }
        }
        let [a, b] = masters;
        let (_, lines_a) = a.finish(LIMIT);
        let (_, lines_b) = b.finish(LIMIT);
        let mut processed = runs(&lines_a);
        processed.extend(runs(&lines_b));
        let failed_out = project.ok(&[
            "asynctask-failed",
            "--queue=chaos",
            "--json",
            &transport_set(&uri),
        ]);
        let failed: Vec<serde_json::Value> = serde_json::from_str(&failed_out).expect("json");
        let failed_ids: Vec<u64> = failed
            .iter()
            .filter_map(|t| t["payload"]["n"].as_u64())
            .collect();
        let lost: Vec<u64> = (0..2000)
            .filter(|n| !processed.contains_key(n) && !failed_ids.contains(n))
            .collect();
        eprintln!(
            "{name}: 2000 tasks, {kills} SIGKILLs, {} processed, {} failed, {} lost",
            processed.len(),
            failed_ids.len(),
            lost.len()
        );
        assert!(lost.is_empty(), "{name}: lost {lost:?}");
    }
}

/// A child SIGKILLed mid-task: the task is failed with the signal as its reason (one attempt,
/// one crash) and the next task runs in the replacement child — also on RabbitMQ, where the
/// broker hands the task back and the new child settles the lost attempt.
#[test]
fn a_child_killed_mid_task_fails_its_task_with_the_signal() {
    for (name, uri) in servers() {
        let project = Project::demo();
        for payload in [r#"{"ms": 600000}"#, r#"{"ms": 0}"#] {
            project.ok(&["asynctask-submit", "slow", payload, &transport_set(&uri)]);
        }
        let mut m = rex_tests::Running::spawn(project.rex(&[
            "asynctask-workers",
            "--halt-when-empty",
            &transport_set(&uri),
            r#"--set=asynctask_workers={"foo": null, "slow": "demo_sleep_worker"}"#,
        ]));
        m.wait_for(LIMIT, |l| {
            l.starts_with("DEBUG:SleepWorker:Got payload: {\"ms\":600000}")
        });
        let children = children_of(m.pid());
        assert_eq!(children.len(), 1, "{name}: {children:?}");
        kill(Pid::from_raw(children[0]), Signal::SIGKILL).expect("kill child");
        let (code, lines) = m.finish(LIMIT);
        let output = lines.join("\n");
        assert_eq!(code, Some(0), "{name}: {output}");
        assert!(
            output.contains(r#"SLEEP processed: {"ms":0}"#),
            "{name}: {output}"
        );
        let failed: Vec<serde_json::Value> = serde_json::from_str(&project.ok(&[
            "asynctask-failed",
            "--queue=slow",
            "--json",
            &transport_set(&uri),
        ]))
        .expect("json");
        assert_eq!(failed.len(), 1, "{name}: {failed:?}");
        assert_eq!(
            failed[0]["payload"],
            serde_json::json!({"ms": 600000}),
            "{name}"
        );
        assert_eq!(failed[0]["last_error"], "killed by SIGKILL", "{name}");
        assert_eq!(
            (
                failed[0]["attempts"].as_u64(),
                failed[0]["crashes"].as_u64()
            ),
            (Some(1), Some(1)),
            "{name}"
        );
    }
}

/// The first value of `sql` on the `REX_TEST_PGSQL` server, as text.
fn pg_value(sql: &str) -> Option<String> {
    let uri = std::env::var("REX_TEST_PGSQL").ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
            .await
            .expect("REX_TEST_PGSQL must be a postgresql:// URI");
        tokio::spawn(connection);
        let messages = client.simple_query(sql).await.expect("query");
        messages.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(String::from),
            _ => None,
        })
    })
}

/// A PostgreSQL server with autovacuum off (this CI's) would let a busy schema fill with dead
/// rows: a running master vacuums it by itself once enough tasks have come and gone.
#[test]
fn a_master_vacuums_its_postgresql_schema_when_autovacuum_is_off() {
    let Some((_, uri)) = servers().into_iter().find(|(name, _)| *name == "pgsql") else {
        return;
    };
    if pg_value("SHOW autovacuum").as_deref() != Some("off") {
        eprintln!("skipped: the server's autovacuum is on");
        return;
    }
    let project = Project::demo();
    // Each task leaves two dead rows (claimed, deleted): 12,000 > the 10,000 that trigger.
    let tasks = 6_000;
    submit_numbered(&project, &uri, "churn", tasks, |_| 0);
    let mut running = Running::spawn(project.rex(&[
        "asynctask-workers",
        "--set=log_level=INFO",
        r#"--set=log_levels={"AsyncTaskWorkerTask": "DEBUG"}"#,
        &transport_set(&uri),
        r#"--set=asynctask_workers={"foo": null, "churn": "demo_sleep_worker"}"#,
    ]));
    // The vacuum may come before or after the last task.
    let last = format!(r#""n":{}}}"#, tasks - 1);
    let (mut vacuumed, mut drained) = (false, false);
    while !(vacuumed && drained) {
        let line = running.wait_for(Duration::from_secs(300), |line| {
            line.contains("Vacuumed") || line.contains(&last)
        });
        if line.contains("Vacuumed") {
            assert!(
                line.starts_with("DEBUG:AsyncTaskWorkerTask:Vacuumed \"rex_e2e_"),
                "{line}"
            );
            vacuumed = true;
        } else {
            drained = true;
        }
    }
    let schema = uri.rsplit("schema=").next().expect("a schema");
    let vacuum_seen = pg_value(&format!(
        "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables
         WHERE schemaname = '{schema}' AND relname = 'tasks'"
    ));
    assert_eq!(vacuum_seen.as_deref(), Some("t"));
    kill(Pid::from_raw(running.pid()), Signal::SIGTERM).expect("SIGTERM");
    let (code, lines) = running.finish(LIMIT);
    assert_eq!(code, Some(0));
    let ran = runs(&lines);
    assert_eq!(ran.len() as u64, tasks, "every task ran");
    assert!(ran.values().all(|&n| n == 1), "each once");
}
