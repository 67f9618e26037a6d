//! `rex asynctask-events` end to end: a follower started before a master sees every task's
//! life, in order, as the master's children and the master itself publish it — a success, a
//! failure, the crash of the child whose task killed it and an operator's retry — on SQLite
//! and every configured server.

use std::collections::BTreeMap;
use std::time::Duration;

use rex_tests::networked::{servers, transport_set};
use rex_tests::{Project, Running};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_follower_sees_each_task_submitted_started_and_settled() {
    let mut all = vec![("sqlite", None)];
    all.extend(servers().into_iter().map(|(name, uri)| (name, Some(uri))));
    for (name, uri) in all {
        let project = Project::demo();
        let set = uri.as_deref().map(transport_set);
        let with = |args: &[&str]| {
            let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            all.extend(set.clone());
            all
        };
        let run = |args: &[&str]| {
            let args = with(args);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            project.ok(&refs)
        };
        let follow = with(&["asynctask-events", "--json"]);
        let refs: Vec<&str> = follow.iter().map(String::as_str).collect();
        let mut follower = Running::spawn(project.rex(&refs));
        follower.wait_for(LIMIT, |l| l.starts_with("Following the events of"));

        run(&["asynctask-submit", "ok", r#"{"n": 1}"#]);
        run(&["asynctask-submit", "oops", r#"{"error": true}"#]);
        run(&["asynctask-submit", "boom", r#"{"abort": true}"#]);
        run(&[
            "asynctask-workers",
            "--halt-when-empty",
            "--quiet",
            r#"--set=asynctask_workers={"ok": "demo_foo_worker", "oops": "demo_error_worker", "boom": "demo_abort_worker"}"#,
        ]);

        // Every queue's events, until each reached its end.
        let mut seen: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let ended = |seen: &BTreeMap<String, Vec<Value>>| {
            ["ok", "oops", "boom"].iter().all(|q| {
                seen.get(*q).is_some_and(|events| {
                    events.iter().any(|e| {
                        matches!(
                            e["event"].as_str(),
                            Some("succeeded" | "failed" | "crashed")
                        )
                    })
                })
            })
        };
        while !ended(&seen) {
            let line = follower.wait_for(LIMIT, |l| l.starts_with('{'));
            let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
            let queue = event["queue"].as_str().unwrap_or_default().to_string();
            seen.entry(queue).or_default().push(event);
        }
        let kinds = |queue: &str| -> Vec<&str> {
            let mut kinds: Vec<&str> = seen[queue]
                .iter()
                .map(|e| e["event"].as_str().unwrap_or_default())
                .collect();
            // RabbitMQ gives a dead child's delivery to the next child (started again), whose
            // master then charges it with the crash it witnessed.
            if name == "amqp" {
                kinds.dedup();
            }
            kinds
        };
        assert_eq!(kinds("ok"), ["submitted", "started", "succeeded"], "{name}");
        assert_eq!(kinds("oops"), ["submitted", "started", "failed"], "{name}");
        assert_eq!(kinds("boom"), ["submitted", "started", "crashed"], "{name}");
        let id = &seen["boom"][0]["task"];
        assert!(
            seen["boom"].iter().all(|e| e["task"] == *id),
            "{name}: {seen:?}"
        );
        let crash = seen["boom"].last().expect("the crash");
        assert_eq!(crash["attempt"], 1, "{name}: {crash}");
        assert_eq!(crash["reason"], "killed by SIGABRT", "{name}: {crash}");
        assert!(
            seen["oops"][2]["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );

        // An operator retries the failed task: one `retried` event names it.
        assert_eq!(
            run(&["asynctask-retry", "--queue=oops"]),
            "Retrying 1 task.\n",
            "{name}"
        );
        let line = follower.wait_for(LIMIT, |l| l.contains(r#""event":"retried""#));
        let retried: Value = serde_json::from_str(&line).expect("one JSON event per line");
        assert_eq!(
            retried["task"], seen["oops"][0]["task"],
            "{name}: {retried}"
        );
        assert_eq!(
            retried["reason"], "retried by an operator",
            "{name}: {retried}"
        );
        drop(follower);
    }
}

/// An open event stream neither keeps the console from stopping on SIGTERM nor outlives it.
#[test]
fn the_console_stops_with_an_event_stream_open() {
    use std::io::{BufRead, BufReader, Write};
    let project = Project::demo();
    let console = rex_tests::console::Dashboard::start(&project, &[]);
    let addr = console.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut status = String::new();
    reader.read_line(&mut status).expect("the status line");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let pid = nix::unistd::Pid::from_raw(console.process.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let (code, lines) = console.process.finish(LIMIT);
    assert_eq!(code, Some(0), "{}", lines.join("\n"));
}
