//! `rex asynctask-cancel` end to end, with a real master: a pending task is failed at once, a
//! running one has its worker stopped and restarted by its master, both recorded as
//! cancelled (neither an error nor a crash). On SQLite and every configured server; RabbitMQ,
//! which cannot take a task out of its queue, refuses with a clear error.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rex_tests::console::Dashboard;
use rex_tests::networked::{rex_on as rex, servers, transport_set, until};
use rex_tests::{Project, Running};

const LIMIT: Duration = Duration::from_secs(120);

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn pending_and_running_tasks_are_cancelled_and_recorded_as_such() {
    let mut all = vec![("sqlite", None)];
    all.extend(servers().into_iter().map(|(name, uri)| (name, Some(uri))));
    for (name, uri) in all {
        let uri = uri.as_deref();
        let project = Project::demo();
        let set = uri.map(transport_set);
        let with = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(set.as_deref());
            all.into_iter().map(str::to_string).collect::<Vec<_>>()
        };
        if name == "amqp" {
            let (code, _, err) = project.run(&refs(&with(&["asynctask-cancel", "1"])));
            assert_eq!(code, 1, "{name}: {err}");
            assert!(
                err.contains("does not support cancelling tasks"),
                "{name}: {err}"
            );
            continue;
        }
        rex(
            &project,
            uri,
            &["asynctask-submit", "slow", r#"{"ms": 600000}"#],
        );
        rex(
            &project,
            uri,
            &["asynctask-submit", "slow", "--delay=1h", r#"{"ms": 1}"#],
        );
        let queues = r#"--set=asynctask_workers={"slow": "demo_sleep_worker"}"#;
        let mut master = Running::spawn(project.rex(&refs(&with(&[
            "asynctask-workers",
            "--set=log_level=DEBUG",
            queues,
        ]))));
        master.wait_for(LIMIT, |l| l.starts_with("DEBUG:SleepWorker:Got payload:"));
        let running = until(LIMIT, "the master shows its running task", || {
            let masters = json(&rex(&project, uri, &["asynctask-masters", "--json"]));
            masters.as_array()?.iter().find_map(|m| {
                m["children"]
                    .as_array()?
                    .iter()
                    .find_map(|c| c["task"].as_i64())
            })
        });
        let console = Dashboard::start(&project, &refs(&with(&[])));
        let delayed = json(&console.get("/api/queues/slow/tasks?state=delayed"))["tasks"][0]["id"]
            .as_i64()
            .expect("the delayed task");

        let out = rex(&project, uri, &["asynctask-cancel", &delayed.to_string()]);
        assert_eq!(
            out,
            format!("Cancelled task {delayed} (kept as failed: retry or purge it).\n"),
            "{name}"
        );
        let out = rex(&project, uri, &["asynctask-cancel", &running.to_string()]);
        assert!(
            out.starts_with(&format!("Asked the master running task {running}")),
            "{name}: {out}"
        );
        master.wait_for(LIMIT, |l| {
            l.contains(&format!(
                "Task {running} on queue slow was cancelled by an operator"
            ))
        });
        master.wait_for(LIMIT, |l| {
            l.contains("Worker for queue slow died; restarting...")
        });
        for id in [delayed, running] {
            let task = until(LIMIT, "the cancelled task is failed", || {
                let task = json(&rex(
                    &project,
                    uri,
                    &["asynctask-show", &id.to_string(), "--json"],
                ));
                (task["state"] == "failed").then_some(task)
            });
            assert_eq!(
                (&task["errors"], &task["crashes"]),
                (&json("0"), &json("0")),
                "{name}: {task}"
            );
            let last = task["history"].as_array().and_then(|h| h.last()).cloned();
            let last = last.unwrap_or_default();
            assert_eq!(last["outcome"], "cancelled", "{name}: {task}");
            assert_eq!(last["reason"], "cancelled by an operator", "{name}: {task}");
        }
        let (code, _, err) = project.run(&refs(&with(&["asynctask-cancel", &running.to_string()])));
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains("is failed and cannot be cancelled"),
            "{name}: {err}"
        );

        kill(Pid::from_raw(master.pid()), Signal::SIGTERM).expect("SIGTERM the master");
        let (code, lines) = master.finish(LIMIT);
        assert_eq!(code, Some(0), "{name}: {}", lines.join("\n"));
    }
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
