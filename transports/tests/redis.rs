//! The Redis transport against a real server: the conformance suite, plus what only a shared
//! server shows (several transport instances, wake-ups across them, a server restart).
//!
//! Set `REX_TEST_REDIS` (e.g. `redis://127.0.0.1:6379/0`) to run them; unset, every test is
//! skipped. Each test uses a key prefix of its own and deletes its keys at the end, so runs may
//! share a database. The restart test also needs `redis-server` on the `PATH`: it starts a
//! private server on a free port.
#![cfg(feature = "redis")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{Payload, SubmitOptions, Transport, TransportError};

mod common;
use common::{unique_prefix, with_param};

/// The server under test, or `None` to skip.
fn server() -> Option<String> {
    common::server("REX_TEST_REDIS")
}

/// `base` with `key_prefix=prefix` added to its query.
fn with_prefix(base: &str, prefix: &str) -> String {
    with_param(base, "key_prefix", prefix)
}

/// Deletes every key of one prefix when dropped.
struct Cleanup {
    server: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Best effort: the server keeps nothing on disk anyway.
        let Ok(client) = raw_client(&self.server) else {
            return;
        };
        let Ok(mut connection) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): ::redis::RedisResult<(u64, Vec<String>)> = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: ::redis::RedisResult<i64> =
                    ::redis::cmd("DEL").arg(&keys).query(&mut connection);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// The TLS server (`rediss://`, with the `ssl_*` parameters rex reads), e.g. the one
/// `.ci/tls-servers` starts: client certificates required.
fn tls_server() -> Option<String> {
    let uri = common::server("REX_TEST_REDIS_TLS");
    if uri.is_none() {
        eprintln!("skipped: REX_TEST_REDIS_TLS is not set");
    }
    uri
}

/// A plain `redis` crate client for `server`, reading the `ssl_*` parameters as rex does.
fn raw_client(server: &str) -> ::redis::RedisResult<::redis::Client> {
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let mut certificates = ::redis::TlsCertificates {
        client_tls: None,
        root_cert: None,
    };
    let (mut cert, mut key) = (Vec::new(), Vec::new());
    for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        let read = || std::fs::read(value).expect("a readable TLS file");
        match name {
            "ssl_ca_certs" => certificates.root_cert = Some(read()),
            "ssl_certfile" => cert = read(),
            "ssl_keyfile" => key = read(),
            _ => {}
        }
    }
    if !cert.is_empty() {
        certificates.client_tls = Some(::redis::ClientTlsConfig {
            client_cert: cert,
            client_key: key,
        });
    }
    if base.starts_with("rediss://") {
        ::redis::Client::build_with_tls(base, certificates)
    } else {
        ::redis::Client::open(server)
    }
}

/// A fresh prefix on the test server: `instances` transports sharing it, and its cleanup.
fn open(instances: usize) -> Option<(Vec<Arc<dyn Transport>>, Cleanup)> {
    open_on(server()?, instances)
}

fn open_on(server: String, instances: usize) -> Option<(Vec<Arc<dyn Transport>>, Cleanup)> {
    let prefix = unique_prefix();
    let uri = with_prefix(&server, &prefix);
    let transports = (0..instances)
        .map(|_| rex_transport::open(&uri).expect("open"))
        .collect();
    Some((transports, Cleanup { server, prefix }))
}

async fn fixture() -> Option<(Arc<dyn Transport>, Cleanup)> {
    let (mut transports, cleanup) = open(1)?;
    Some((transports.remove(0), cleanup))
}

rex_transport_conformance::conformance_suite!(redis, fixture());

rex_transport_conformance::conformance_suite!(redis_tls, async {
    let (mut transports, cleanup) = open_on(tls_server()?, 1)?;
    Some((transports.remove(0), cleanup))
});

/// Over TLS: a waiter on one instance (a blocking connection of its own) is woken by another.
#[tokio::test]
async fn tls_wait_is_woken_by_another_instance() {
    let Some((transports, cleanup)) = tls_server().and_then(|server| open_on(server, 2)) else {
        return;
    };
    woken_across(&transports, &cleanup).await;
}

/// The server checks client certificates and the client checks the server's.
#[tokio::test]
async fn tls_checks_both_ends() {
    let Some(server) = tls_server() else { return };
    common::tls_checks_both_ends(&server, "ssl_ca_certs", ["ssl_certfile", "ssl_keyfile"]).await;
}

/// Opening parses the URI without connecting; `describe` hides the password.
#[test]
fn uris() {
    let t = rex_transport::open("redis://127.0.0.1:6379/0").expect("open");
    assert_eq!(t.describe(), "Redis(redis://127.0.0.1:6379/0, prefix rex)");
    assert!(t.is_shared());

    let t = rex_transport::open("redis://user:s3cret@localhost/1?key_prefix=my_app").expect("open");
    assert_eq!(
        t.describe(),
        "Redis(redis://user:***@localhost/1, prefix my_app)"
    );
    let t = rex_transport::open("redis+unix:///run/redis.sock?db=2&pass=s3cret").expect("open");
    assert_eq!(
        t.describe(),
        "Redis(redis+unix:///run/redis.sock?db=2&pass=***, prefix rex)"
    );

    let err = rex_transport::open("redis://:s3cret@localhost/0?key_prefix=Nope")
        .err()
        .expect("a bad key prefix");
    assert!(matches!(err, TransportError::InvalidUri { .. }), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = rex_transport::open("redis://:s3cret@localhost/x")
        .err()
        .expect("a bad database");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = rex_transport::open("rediss://:s3cret@localhost/0?ssl_ca_certs=/nonexistent.pem")
        .err()
        .expect("no such CA file");
    assert!(matches!(err, TransportError::InvalidUri { .. }), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

/// A server that cannot be reached gives the retryable error, without the password.
#[tokio::test]
async fn unreachable_servers_are_unavailable() {
    // A loopback port that was just free: nothing listens there, the connection is refused.
    let port = free_port();
    let t = rex_transport::open(&format!("redis://:s3cret@127.0.0.1:{port}/0")).expect("open");
    let err = t.counts("foo").await.expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = t
        .wait("foo", Duration::from_secs(5))
        .await
        .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err}");
}

/// `wait` on one instance returns when another instance submits to the queue.
#[tokio::test]
async fn wait_is_woken_by_another_instance() {
    let Some((transports, cleanup)) = open(2) else {
        eprintln!("skipped: REX_TEST_REDIS is not set");
        return;
    };
    woken_across(&transports, &cleanup).await;
}

async fn woken_across(transports: &[Arc<dyn Transport>], cleanup: &Cleanup) {
    let (waiter_side, submitter) = (Arc::clone(&transports[0]), &transports[1]);
    let queue = "wakeup";
    let waiter = {
        let t = Arc::clone(&waiter_side);
        tokio::spawn(async move { t.wait(queue, Duration::from_secs(600)).await })
    };
    // Submit once the waiter is blocked on the server (its connection is named after the
    // prefix), so that the wake-up, not the first check, is what ends the wait.
    blocked_on_server(cleanup).await;
    submitter
        .submit(queue, Payload::new(), &SubmitOptions::default())
        .await
        .expect("submit");
    tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("woken up well before the wait's own timeout")
        .expect("waiter panicked")
        .expect("wait");
    let task = waiter_side
        .claim(queue, "owner", Duration::from_secs(60))
        .await
        .expect("claim");
    assert!(task.is_some(), "the submitted task is claimable");
}

/// Waits until a connection of this prefix's waiters is blocked in `BLPOP`.
async fn blocked_on_server(cleanup: &Cleanup) {
    let client = raw_client(&cleanup.server).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let name = format!("name={}:wait ", cleanup.prefix);
    for _ in 0..6000 {
        let clients: String = ::redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut connection)
            .await
            .expect("CLIENT LIST");
        if clients
            .lines()
            .any(|line| line.contains(&name) && line.contains("cmd=blpop"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the waiter never blocked on the server");
}

/// `wait` on a paused queue blocks whatever is ready, submits meanwhile included, and returns
/// when another instance resumes the queue.
#[tokio::test]
async fn a_paused_queue_is_waited_on_until_resumed() {
    let Some((transports, cleanup)) = open(2) else {
        eprintln!("skipped: REX_TEST_REDIS is not set");
        return;
    };
    let queue = "paused";
    let (waiter_side, other) = (Arc::clone(&transports[0]), &transports[1]);
    assert!(other.set_paused(queue, true).await.expect("pause"));
    let submit = || async {
        other
            .submit(queue, Payload::new(), &SubmitOptions::default())
            .await
            .expect("submit")
    };
    submit().await;
    let mut waiter =
        tokio::spawn(async move { waiter_side.wait(queue, Duration::from_secs(600)).await });
    blocked_on_server(&cleanup).await;
    submit().await; // its wake-up token only sends the waiter back to the probe
    let early = tokio::time::timeout(Duration::from_millis(500), &mut waiter).await;
    assert!(early.is_err(), "wait returned on a paused queue: {early:?}");
    assert!(other.set_paused(queue, false).await.expect("resume"));
    tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("woken up by the resume")
        .expect("waiter panicked")
        .expect("wait");
}

/// A delayed task submitted elsewhere ends a long wait once it is due.
#[tokio::test]
async fn wait_returns_for_delayed_tasks() {
    let Some((transports, _cleanup)) = open(2) else {
        eprintln!("skipped: REX_TEST_REDIS is not set");
        return;
    };
    let queue = "delayed";
    let run_at = SystemTime::now() + Duration::from_millis(200);
    let opts = SubmitOptions {
        run_at: Some(run_at),
        ..SubmitOptions::default()
    };
    transports[1]
        .submit(queue, Payload::new(), &opts)
        .await
        .expect("submit");
    // Wake-ups may be spurious: wait until the claim succeeds, as a worker does.
    let claimed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            transports[0]
                .wait(queue, Duration::from_secs(600))
                .await
                .expect("wait");
            let claimed = transports[0]
                .claim(queue, "owner", Duration::from_secs(60))
                .await
                .expect("claim");
            if let Some(task) = claimed {
                return task;
            }
        }
    })
    .await
    .expect("the delayed task became claimable well before the wait's own timeout");
    // Due times are kept to the millisecond: claimable from run_at's millisecond on.
    let ms = |t: SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis()
    };
    assert!(ms(SystemTime::now()) >= ms(run_at), "claimed before run_at");
    assert_eq!(claimed.attempt, 1);
}

/// Claimers on two transport instances get every task exactly once.
#[tokio::test]
async fn claimers_on_two_instances_get_each_task_once() {
    const TASKS: usize = 300;
    let Some((transports, _cleanup)) = open(2) else {
        eprintln!("skipped: REX_TEST_REDIS is not set");
        return;
    };
    let queue = "shared";
    let mut submitted = BTreeSet::new();
    for n in 0..TASKS {
        let mut payload = Payload::new();
        payload.insert("n".into(), n.into());
        let id = transports[n % 2]
            .submit(queue, payload, &SubmitOptions::default())
            .await
            .expect("submit")
            .expect("no idempotency key");
        submitted.insert(id);
    }
    let claimed = rex_transport_conformance::claim_concurrently(&transports, queue, 6).await;
    rex_transport_conformance::assert_claimed_once(claimed, &submitted);
    let counts = transports[0].counts(queue).await.expect("counts");
    assert!(counts.is_drained() && counts.failed == 0, "{counts:?}");
}

/// A loopback port nothing listens on (as far as the system knows now).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// A private `redis-server` (no persistence) on a free loopback port.
struct PrivateServer {
    port: u16,
    child: tokio::process::Child,
}

impl PrivateServer {
    /// `None` when `redis-server` is not installed.
    async fn start(port: Option<u16>) -> Option<PrivateServer> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let port = port.unwrap_or_else(free_port);
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("server output") {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready.ok(), Some(true), "redis-server did not start");
        // Keep reading its output so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(PrivateServer { port, child })
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("kill redis-server");
    }
}

/// Retry `op` while it fails with a retryable error, as callers do; other errors fail the test.
async fn retrying<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = rex_transport::Result<T>>,
{
    for _ in 0..20 {
        match op().await {
            Ok(value) => return value,
            Err(e) if e.is_retryable() => eprintln!("{what}: {e} (retrying)"),
            Err(e) => panic!("{what}: {e}"),
        }
    }
    panic!("{what}: still failing after 20 tries");
}

/// After the server restarts (empty: it keeps nothing on disk), the same transport works again
/// once the outage errors — all retryable — have passed.
#[tokio::test]
async fn works_again_after_a_server_restart() {
    if server().is_none() {
        eprintln!("skipped: REX_TEST_REDIS is not set");
        return;
    }
    let Some(first) = PrivateServer::start(None).await else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let port = first.port;
    let t = rex_transport::open(&format!("redis://127.0.0.1:{port}/0")).expect("open");
    let lease = Duration::from_secs(600);
    t.submit("before", Payload::new(), &SubmitOptions::default())
        .await
        .expect("submit");
    let old = t
        .claim("before", "owner", lease)
        .await
        .expect("claim")
        .expect("claimable");
    // Leaves an idle blocking connection in the pool, to be found dead after the restart.
    t.wait("idle", Duration::from_millis(10))
        .await
        .expect("wait");

    first.stop().await;
    let err = t.counts("before").await.expect_err("the server is down");
    assert!(err.is_retryable(), "{err}");
    let second = PrivateServer::start(Some(port))
        .await
        .expect("redis-server restarts");

    let opts = SubmitOptions::default();
    let id = retrying("submit", || t.submit("after", Payload::new(), &opts))
        .await
        .expect("no idempotency key");
    retrying("wait", || t.wait("after", Duration::from_secs(600))).await;
    retrying("wait", || t.wait("idle", Duration::from_millis(10))).await;
    let task = retrying("claim", || t.claim("after", "owner", lease))
        .await
        .expect("claimable after the restart");
    assert_eq!(task.id, id);
    assert_ne!(
        task.lease_token, old.lease_token,
        "lease tokens are not issued twice across a restart"
    );
    let (old_lease, new_lease) = (old.lease(), task.lease());
    assert!(
        !retrying("complete", || t.complete(&old_lease, &[])).await,
        "a lease from before the restart is stale"
    );
    assert!(retrying("complete", || t.complete(&new_lease, &[])).await);
    second.stop().await;
}
