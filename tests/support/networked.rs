//! Helpers for the tests of the networked transports (`REX_TEST_PGSQL`, `REX_TEST_REDIS`,
//! `REX_TEST_AMQP`).

use std::collections::BTreeMap;

use crate::{Project, Running};

/// The configured servers, each isolated under a fresh namespace.
pub fn servers() -> Vec<(&'static str, String)> {
    servers_named("")
}

/// The servers' TLS endpoints (`REX_TEST_PGSQL_TLS`, ...; `.ci/tls-servers` sets them up).
pub fn tls_servers() -> Vec<(&'static str, String)> {
    servers_named("_TLS")
}

fn servers_named(suffix: &str) -> Vec<(&'static str, String)> {
    let tag: String = std::iter::repeat_with(fastrand::lowercase)
        .take(10)
        .collect();
    let mut out = Vec::new();
    for (name, var, param) in [
        ("pgsql", "REX_TEST_PGSQL", "schema"),
        ("redis", "REX_TEST_REDIS", "key_prefix"),
        ("amqp", "REX_TEST_AMQP", "prefix"),
    ] {
        let var = format!("{var}{suffix}");
        match std::env::var(&var).ok().filter(|v| !v.is_empty()) {
            Some(uri) => {
                let sep = if uri.contains('?') { '&' } else { '?' };
                out.push((name, format!("{uri}{sep}{param}=rex_e2e_{tag}")));
            }
            None => eprintln!("{name}: skipped ({var} is not set)"),
        }
    }
    out
}

pub fn transport_set(uri: &str) -> String {
    format!("--set=asynctask_transport={uri}")
}

/// (n -> times printed) from `SLEEP processed: {"ms":..,"n":N}` lines.
pub fn runs(lines: &[String]) -> BTreeMap<u64, usize> {
    let mut runs = BTreeMap::new();
    for line in lines {
        if let Some(json) = line.strip_prefix("SLEEP processed: ")
            && let Some(n) = serde_json::from_str::<serde_json::Value>(json)
                .ok()
                .and_then(|v| v["n"].as_u64())
        {
            *runs.entry(n).or_default() += 1;
        }
    }
    runs
}

pub fn submit_numbered(project: &Project, uri: &str, queue: &str, n: u64, ms: impl Fn(u64) -> u64) {
    let lines: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"ms": {}, "n": {i}}}"#, ms(i)))
        .collect();
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

pub fn master(project: &Project, uri: &str, queues: &str) -> Running {
    Running::spawn(project.rex(&[
        "asynctask-workers",
        "--halt-when-empty",
        "--set=log_level=INFO",
        &transport_set(uri),
        &format!("--set=asynctask_workers={queues}"),
    ]))
}
