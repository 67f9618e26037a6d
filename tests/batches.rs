//! Batched claims end to end, on every transport (SQLite, and each configured server): a
//! child holds a window of claimed tasks, and whatever happens to it — SIGKILL, a timeout, a
//! poison payload, a warm shutdown, a dead master — only the task it was running is charged,
//! its batch-mates run once each, and nothing is lost. RabbitMQ claims one task at a time
//! (its broker holds the leases), so there the same outcomes hold with a window of one.
//!
//! The tasks are submitted before the master starts, so the window grows the same way every
//! run: batches of 1, 2, 4, 8, 16, 32... Every wait is for a line of output or an exit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rex_tests::networked::{counts, failed, runs, servers, submit_numbered, transport_set};
use rex_tests::{Project, Running, children_of, wait_gone};

const LIMIT: Duration = Duration::from_secs(120);

/// Run `case` once per transport, each with a fresh demo project: SQLite in the project's
/// directory, then every configured server under a fresh namespace.
fn on_every_transport(case: impl Fn(&str, &Project, &str)) {
    let project = Project::demo();
    let sqlite = format!("sqlite:{}", project.path().join("batch.db").display());
    case("sqlite", &project, &sqlite);
    for (name, uri) in servers() {
        case(name, &Project::demo(), &uri);
    }
}

fn workers(project: &Project, uri: &str, queues: &str, halt: bool) -> Running {
    let mut args = vec![
        "asynctask-workers".to_string(),
        "--set=log_level=INFO".into(),
        r#"--set=log_levels={"SleepWorker": "DEBUG", "AbortWorker": "DEBUG"}"#.into(),
        transport_set(uri),
        format!("--set=asynctask_workers={queues}"),
    ];
    if halt {
        args.push("--halt-when-empty".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::spawn(project.rex(&args))
}

/// The tasks numbered `0..n` except `but`, each run exactly once.
fn assert_each_ran_once(name: &str, ran: &BTreeMap<u64, usize>, n: u64, but: &[u64]) {
    let expected: Vec<u64> = (0..n).filter(|i| !but.contains(i)).collect();
    let got: Vec<u64> = ran.keys().copied().filter(|i| !but.contains(i)).collect();
    assert_eq!(got, expected, "{name}: every task ran");
    let twice: Vec<_> = ran.iter().filter(|(_, k)| **k > 1).collect();
    assert!(twice.is_empty(), "{name}: ran more than once: {twice:?}");
}

/// The number in `Released N task(s) that the dead worker held but was not running`.
fn released_by_master(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.split("Released ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_child_killed_mid_batch_charges_only_the_running_task() {
    on_every_transport(|name, project, uri| {
        // Batches 1+2+4+8+16 take tasks 0..31; the next batch starts with the slow task 31
        // and holds the 20 after it.
        const SLOW: u64 = 31;
        submit_numbered(project, uri, "slow", 52, |i| {
            if i == SLOW { 600_000 } else { 0 }
        });
        let mut master = workers(
            project,
            uri,
            r#"{"foo": null, "slow": "demo_sleep_worker"}"#,
            true,
        );
        master.wait_for(LIMIT, |l| l.contains(r#"Got payload: {"ms":600000"#));
        let children = children_of(master.pid());
        assert_eq!(children.len(), 1, "{name}: {children:?}");
        kill(Pid::from_raw(children[0]), Signal::SIGKILL).expect("kill child");
        let (code, lines) = master.finish(LIMIT);
        let output = lines.join("\n");
        assert_eq!(code, Some(0), "{name}: {output}");

        let dead = failed(project, uri, "slow");
        assert_eq!(dead.len(), 1, "{name}: only the running task: {dead:?}");
        assert_eq!(dead[0]["payload"]["n"], SLOW, "{name}");
        assert_eq!(dead[0]["last_error"], "killed by SIGKILL", "{name}");
        assert_eq!(
            (dead[0]["attempts"].as_u64(), dead[0]["crashes"].as_u64()),
            (Some(1), Some(1)),
            "{name}"
        );
        // The default policy allows one attempt: a batch-mate charged with the crash would be
        // failed, not run again.
        assert_each_ran_once(name, &runs(&lines), 52, &[SLOW]);
        if name != "amqp" {
            assert_eq!(
                released_by_master(&lines),
                20,
                "{name}: the prefetched tasks went back uncharged:\n{output}"
            );
        }
        eprintln!("{name}: the killed child held 20 more tasks; 1 charged, 51 ran once");
    });
}

#[test]
fn a_task_that_kills_its_children_is_quarantined_even_when_its_master_dies_too() {
    on_every_transport(|name, project, uri| {
        // Task 12 aborts its process; it is in the batch of 8 that starts with task 7.
        let lines: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"abort": {}, "n": {i}}}"#, i == 12))
            .collect();
        let mut submit = project
            .rex(&["asynctask-submit", "boom", "-", &transport_set(uri)])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("submit");
        {
            use std::io::Write;
            let mut stdin = submit.stdin.take().expect("stdin");
            for l in &lines {
                writeln!(stdin, "{l}").expect("write");
            }
        }
        assert!(submit.wait().expect("wait").success());
        let queues = r#"{"foo": null, "boom": {"worker": "demo_abort_worker", "max_attempts": 5, "max_crashes": 2, "retry_delay_min": "10ms", "retry_delay_max": "20ms"}}"#;

        // The first master sees one death, and is SIGKILLed right then: its children die with
        // it, and whether it recorded the crash is up to the race.
        let mut first = workers(project, uri, queues, true);
        first.wait_for(LIMIT, |l| l.contains("Worker for queue boom died"));
        kill(Pid::from_raw(first.pid()), Signal::SIGKILL).expect("kill master");
        let (_, first_lines) = first.finish(LIMIT);
        // A master on the same host reclaims what the dead one's children held at once.
        let second = workers(project, uri, queues, true);
        let (code, second_lines) = second.finish(LIMIT);
        let output = second_lines.join("\n");
        assert_eq!(code, Some(0), "{name}: {output}");

        let dead = failed(project, uri, "boom");
        assert_eq!(dead.len(), 1, "{name}: {dead:?}\n{output}");
        assert_eq!(dead[0]["payload"]["n"], 12, "{name}");
        assert_eq!(dead[0]["crashes"], 2, "{name}: quarantined at max_crashes");
        let mut ran: BTreeMap<u64, usize> = BTreeMap::new();
        for line in first_lines.iter().chain(&second_lines) {
            if let Some(json) = line.strip_prefix("ABORT processed: ")
                && let Some(n) = serde_json::from_str::<serde_json::Value>(json)
                    .ok()
                    .and_then(|v| v["n"].as_u64())
            {
                *ran.entry(n).or_default() += 1;
            }
        }
        // A task the first master's children had finished but not recorded may run again:
        // every task ran, none lost; repeats only from the dead master.
        let expected: Vec<u64> = (0..40).filter(|i| *i != 12).collect();
        assert_eq!(ran.keys().copied().collect::<Vec<_>>(), expected, "{name}");
        assert_eq!(counts(project, uri, "boom"), (0, 0, 1), "{name}");
        eprintln!("{name}: the poison task was quarantined after 2 crashes; 39 others ran");
    });
}

#[test]
fn a_task_that_times_out_third_in_its_batch_is_failed_on_time_and_its_mates_run_once() {
    on_every_transport(|name, project, uri| {
        // Batches 1, 2, 4: the third batch is tasks 3..7, and its third task is 5.
        const HUNG: u64 = 5;
        submit_numbered(project, uri, "hung", 16, |i| {
            if i == HUNG { 600_000 } else { 0 }
        });
        let queues = r#"{"foo": null, "hung": {"worker": "demo_sleep_worker", "timeout": "1s"}}"#;
        let master = workers(project, uri, queues, true);
        let (code, lines) = master.finish(LIMIT);
        let output = lines.join("\n");
        assert_eq!(code, Some(0), "{name}: {output}");
        let dead = failed(project, uri, "hung");
        assert_eq!(dead.len(), 1, "{name}: {dead:?}");
        assert_eq!(dead[0]["payload"]["n"], HUNG, "{name}");
        assert_eq!(dead[0]["last_error"], "timeout after 1s", "{name}");
        assert_each_ran_once(name, &runs(&lines), 16, &[HUNG]);
    });
}

#[test]
fn warm_shutdown_finishes_the_running_task_and_gives_back_the_rest_of_its_batch() {
    on_every_transport(|name, project, uri| {
        // Task 7 (1.5 s) starts the batch of 8 that holds tasks 7..15.
        const SLOW: u64 = 7;
        submit_numbered(
            project,
            uri,
            "warm",
            30,
            |i| if i == SLOW { 1500 } else { 0 },
        );
        let mut master = workers(
            project,
            uri,
            r#"{"foo": null, "warm": "demo_sleep_worker"}"#,
            false,
        );
        master.wait_for(LIMIT, |l| l.contains(r#"Got payload: {"ms":1500"#));
        kill(Pid::from_raw(master.pid()), Signal::SIGTERM).expect("SIGTERM");
        let (code, lines) = master.finish(LIMIT);
        let output = lines.join("\n");
        assert_eq!(code, Some(0), "{name}: {output}");
        let ran = runs(&lines);
        assert_eq!(
            ran.get(&SLOW),
            Some(&1),
            "{name}: the running task finished"
        );
        assert_each_ran_once(name, &ran, SLOW + 1, &[]);
        let left = 30 - ran.len() as u64;
        assert_eq!(
            counts(project, uri, "warm"),
            (left, 0, 0),
            "{name}: the unstarted tasks are pending again, none running"
        );
        // What was given back used no attempt: it runs now, each task once.
        let (code, lines) = workers(
            project,
            uri,
            r#"{"foo": null, "warm": "demo_sleep_worker"}"#,
            true,
        )
        .finish(LIMIT);
        assert_eq!(code, Some(0), "{name}");
        let mut all = ran;
        for (n, k) in runs(&lines) {
            *all.entry(n).or_default() += k;
        }
        assert_each_ran_once(name, &all, 30, &[]);
        assert!(failed(project, uri, "warm").is_empty(), "{name}");
    });
}

#[test]
fn two_masters_with_batches_share_a_queue_and_run_every_task_once() {
    on_every_transport(|name, project, uri| {
        submit_numbered(project, uri, "shared", 1000, |_| 1);
        let queues = r#"{"foo": null, "shared": "demo_sleep_worker"}"#;
        let (a, b) = (
            workers(project, uri, queues, true),
            workers(project, uri, queues, true),
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
        assert_each_ran_once(name, &all, 1000, &[]);
        assert!(
            !runs_a.is_empty() && !runs_b.is_empty(),
            "{name}: both masters took work"
        );
    });
}

/// Issue 15, item 6: the master SIGKILLed mid-drain. Its children die with it
/// (`PR_SET_PDEATHSIG`), and the next master on the host reclaims their leases at start (the
/// dead master's pid no longer matches; RabbitMQ: the broker returns the deliveries of the
/// children's closed connections) and drains the queue: nothing is lost.
#[test]
fn a_master_killed_mid_drain_takes_its_children_along_and_the_next_one_reclaims_their_tasks() {
    on_every_transport(|name, project, uri| {
        const N: u64 = 200;
        submit_numbered(project, uri, "orphan", N, |_| 10);
        // On RabbitMQ the task a child was running comes back as a crash: one attempt more.
        let queues = r#"{"foo": null, "orphan": {"worker": "demo_sleep_worker", "concurrency": 2, "max_attempts": 2, "retry_delay_min": "10ms", "retry_delay_max": "10ms"}}"#;
        let mut first = workers(project, uri, queues, true);
        for _ in 0..20 {
            first.wait_for(LIMIT, |l| l.starts_with("SLEEP processed: "));
        }
        let children = children_of(first.pid());
        assert_eq!(children.len(), 2, "{name}: {children:?}");
        kill(Pid::from_raw(first.pid()), Signal::SIGKILL).expect("kill master");
        let killed = Instant::now();
        for child in &children {
            assert!(
                wait_gone(*child, Duration::from_secs(30)),
                "{name}: worker {child} outlived its master"
            );
        }
        let gone = killed.elapsed();
        let (_, first_lines) = first.finish(LIMIT);
        let (_, held, _) = counts(project, uri, "orphan");

        let second = workers(project, uri, queues, true);
        let (code, second_lines) = second.finish(LIMIT);
        let output = second_lines.join("\n");
        assert_eq!(code, Some(0), "{name}: {output}");
        let reclaimed = second_lines
            .iter()
            .filter(|l| l.contains("Reclaimed task") && l.contains("its master died"))
            .count();
        if name != "amqp" {
            // Every task still leased to the dead master's children is released at start,
            // without waiting for the lease (60 s) to expire, and without an attempt used.
            assert_eq!(reclaimed as u64, held, "{name}: {output}");
        }
        assert!(
            failed(project, uri, "orphan").is_empty(),
            "{name}: {output}"
        );
        assert_eq!(counts(project, uri, "orphan"), (0, 0, 0), "{name}");
        let mut all = runs(&first_lines);
        for (n, k) in runs(&second_lines) {
            *all.entry(n).or_default() += k;
        }
        let lost: Vec<u64> = (0..N).filter(|n| !all.contains_key(n)).collect();
        assert!(lost.is_empty(), "{name}: lost {lost:?}");
        eprintln!(
            "{name}: master SIGKILLed after {} of {N} tasks; its 2 children gone {:.0} ms later; \
             {held} leased tasks, {reclaimed} reclaimed at the next start; lost 0; {} repeated runs",
            runs(&first_lines).len(),
            gone.as_secs_f64() * 1000.0,
            all.values().map(|k| k - 1).sum::<usize>()
        );
    });
}
