//! Helpers for the tests of the networked transports (`REX_TEST_PGSQL`, `REX_TEST_REDIS`,
//! `REX_TEST_AMQP`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
    master_with(project, uri, queues, &[])
}

/// [`master`] with more arguments (`--set=...`).
pub fn master_with(project: &Project, uri: &str, queues: &str, extra: &[&str]) -> Running {
    let transport = transport_set(uri);
    let workers = format!("--set=asynctask_workers={queues}");
    let mut args = vec![
        "asynctask-workers",
        "--halt-when-empty",
        "--set=log_level=INFO",
        &transport,
        &workers,
    ];
    args.extend_from_slice(extra);
    Running::spawn(project.rex(&args))
}

/// `asynctask-queues --json` row of `queue` on `uri`: (pending, running, failed).
pub fn counts(project: &Project, uri: &str, queue: &str) -> (u64, u64, u64) {
    let out = project.ok(&["asynctask-queues", "--json", &transport_set(uri)]);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("json");
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r["queue"] == queue))
        .map_or((0, 0, 0), |r| {
            (
                r["pending"].as_u64().unwrap_or(0),
                r["running"].as_u64().unwrap_or(0),
                r["failed"].as_u64().unwrap_or(0),
            )
        })
}

/// `asynctask-failed --queue=Q --json` on `uri`.
pub fn failed(project: &Project, uri: &str, queue: &str) -> Vec<serde_json::Value> {
    let out = project.ok(&[
        "asynctask-failed",
        &format!("--queue={queue}"),
        "--json",
        &transport_set(uri),
    ]);
    serde_json::from_str(&out).expect("json")
}

/// The server address of a network URI (`scheme://[userinfo@]host:port/...`).
pub fn server_addr(uri: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let (_, authority, _) = split_authority(uri);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = match uri.split(':').next() {
        Some("redis") => 6379,
        Some("amqp") => 5672,
        _ => 5432,
    };
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    hostport
        .to_socket_addrs()
        .expect("server address")
        .next()
        .expect("an address")
}

/// `uri` with its host and port replaced by `addr` (a proxy's).
pub fn via(uri: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, authority, rest) = split_authority(uri);
    let userinfo = authority
        .rsplit_once('@')
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    format!("{scheme}//{userinfo}{addr}{rest}")
}

/// (`scheme:`, authority, the rest from the path on).
fn split_authority(uri: &str) -> (&str, &str, &str) {
    let at = uri.find("//").expect("a URI with an authority");
    let (scheme, hier) = (&uri[..at], &uri[at + 2..]);
    let end = hier.find(['/', '?']).unwrap_or(hier.len());
    (scheme, &hier[..end], &hier[end..])
}

/// `rex <args>` on the transport `uri` (the project's default with `None`), insisting on
/// success; stdout.
pub fn rex_on(project: &Project, uri: Option<&str>, args: &[&str]) -> String {
    let set = uri.map(transport_set);
    let mut all = args.to_vec();
    all.extend(set.as_deref());
    project.ok(&all)
}

/// Ask `probe` until it answers (a state reached), or panic after `limit` saying `what`.
pub fn until<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        // The pace of asking, not a synchronisation: each probe is a whole rex command.
        std::thread::sleep(Duration::from_millis(50));
    }
}
