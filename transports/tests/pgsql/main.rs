//! The PostgreSQL transport against a real server: the conformance suite, plus what only a
//! server shows — notifications across connections, claimers on several instances, reconnection.
//!
//! Set `REX_TEST_PGSQL` to a `postgresql://` URI (e.g.
//! `postgresql://postgres@127.0.0.1:5432/test`) whose user may create schemas; without it the
//! server cases are skipped. Every case works in a schema of its own,
//! `rex_test_<unix seconds>_<random>`, dropped when the case ends; schemas left behind by killed
//! runs are dropped by the next run once they are an hour old.
//!
//! Here: the fixture, the suites, TLS, wake-ups, sharing, reconnection. `schema.rs`: creating,
//! migrating and vacuuming the schema. `console.rs`: what the console's conformance cases
//! leave to this backend (pausing across instances, failure times on every path).
//! `events.rs`: lifecycle events across instances, `NOTIFY`'s payload limit, a lost follower.
#![cfg(feature = "pgsql")]

use std::collections::BTreeSet;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rex_transport::{Payload, SubmitOptions, Transport, TransportError};

/// Long enough never to expire during a case.
const LEASE: Duration = Duration::from_secs(600);
/// What `wait` is given when it is expected to be woken up, not to time out.
const LONG_WAIT: Duration = Duration::from_secs(600);
/// How long a test lets such a `wait` take before failing: generous, never reached when working.
const GENEROUS: Duration = Duration::from_secs(120);

#[path = "../common/mod.rs"]
mod common;
mod console;
mod events;
mod schema;
use common::with_param;

fn server() -> Option<String> {
    let uri = common::server("REX_TEST_PGSQL");
    if uri.is_none() {
        eprintln!("skipped: REX_TEST_PGSQL is not set");
    }
    uri
}

/// The server URI as `tokio_postgres` reads it: its own scheme, none of rex's parameters.
fn admin_uri(server: &str) -> String {
    let base = server.split('?').next().unwrap_or(server);
    match base.strip_prefix("pgsql://") {
        Some(rest) => format!("postgresql://{rest}"),
        None => base.to_string(),
    }
}

/// A plain client for inspecting and disturbing the server, on the current runtime.
async fn admin(server: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&admin_uri(server), tokio_postgres::NoTls)
        .await
        .expect("admin connection (REX_TEST_PGSQL must be a postgresql:// URI)");
    tokio::spawn(connection);
    client
}

/// Run `sql` from a thread and runtime of its own, blocking the caller — in `Drop`, or to
/// change things on the server while this runtime's tasks cannot react. Returns the first value
/// of the first row, if any.
fn admin_blocking(server: &str, sql: String) -> Result<Option<String>, String> {
    let uri = admin_uri(server);
    std::thread::spawn(move || -> Result<Option<String>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let messages = client.simple_query(&sql).await.map_err(|e| e.to_string())?;
            Ok(messages.iter().find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(String::from),
                _ => None,
            }))
        })
    })
    .join()
    .unwrap_or_else(|_| Err("panicked".into()))
}

/// Best-effort cleanup: failures are only reported.
fn cleanup(server: &str, sql: String) {
    if let Err(e) = admin_blocking(server, sql) {
        eprintln!("cleanup failed: {e}");
    }
}

/// A fresh schema for one case; dropped with everything in it when the guard goes.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    fn fresh(server: &str) -> Self {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| {
            cleanup(
                server,
                "DO $$ DECLARE name text; BEGIN
                   FOR name IN SELECT nspname FROM pg_namespace
                     WHERE nspname ~ '^rex_test_[0-9]+_[a-z]+$'
                       AND split_part(nspname, '_', 3)::bigint < extract(epoch FROM now()) - 3600
                   LOOP EXECUTE format('DROP SCHEMA %I CASCADE', name); END LOOP;
                 END $$"
                    .to_string(),
            );
        });
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let suffix: String = std::iter::repeat_with(fastrand::lowercase)
            .take(10)
            .collect();
        Schema {
            server: server.to_string(),
            name: format!("rex_test_{seconds}_{suffix}"),
        }
    }

    /// The server URI pointed at this schema.
    fn uri(&self) -> String {
        with_param(&self.server, "schema", &self.name)
    }

    /// A transport on this schema whose connections carry `application_name` (so that a test
    /// can find them on the server).
    fn open_as(&self, application_name: &str) -> Arc<dyn Transport> {
        rex_transport::open(&with_param(
            &self.uri(),
            "application_name",
            application_name,
        ))
        .expect("open")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        cleanup(
            &self.server,
            format!(
                "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.name
            ),
        );
    }
}

fn fixture_on(server: Option<String>) -> Option<(Arc<dyn Transport>, Schema)> {
    let schema = Schema::fresh(&server?);
    let transport = rex_transport::open(&schema.uri()).expect("open");
    Some((transport, schema))
}

rex_transport_conformance::conformance_suite!(pgsql, async { fixture_on(server()) });

/// The server over TLS with its certificate checked, e.g.
/// `postgresql://postgres@localhost/test?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem`
/// (`.ci/tls-servers` sets it when the cluster has `ssl = on`).
fn tls_server() -> Option<String> {
    let uri = common::server("REX_TEST_PGSQL_TLS");
    if uri.is_none() {
        eprintln!("skipped: REX_TEST_PGSQL_TLS is not set");
    }
    uri
}

rex_transport_conformance::conformance_suite!(pgsql_tls, async { fixture_on(tls_server()) });

/// Every connection of a `verify-full` transport — pooled and listening — is encrypted.
#[tokio::test]
async fn tls_connections_are_encrypted_and_checked() {
    let Some(server) = tls_server() else { return };
    let schema = Schema::fresh(&server);
    let waiter_name = format!("{}_waiter", schema.name);
    let waiter = schema.open_as(&waiter_name);
    let submitter = schema.open_as(&format!("{}_submitter", schema.name));
    let admin = admin(&server).await;
    woken_across_instances(&admin, &waiter, &waiter_name, &submitter, "sealed").await;
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name LIKE $1",
            &[&format!("{}%", schema.name)],
        )
        .await
        .expect("pg_stat_ssl");
    let encrypted: Vec<bool> = rows.iter().map(|row| row.get(0)).collect();
    // The waiter's pool and its LISTEN connection, and the submitter's pool.
    assert!(encrypted.len() >= 3, "{encrypted:?}");
    assert!(encrypted.iter().all(|&ssl| ssl), "{encrypted:?}");
}

/// A certificate that does not name the host fails `verify-full` (retryable, like every
/// connection failure) and passes `verify-ca`.
#[tokio::test]
async fn verify_full_checks_the_host_name() {
    let Some(server) = tls_server() else { return };
    if !server.contains("://localhost") {
        eprintln!("skipped: REX_TEST_PGSQL_TLS does not name localhost");
        return;
    }
    let schema = Schema::fresh(&server.replacen("://localhost", "://127.0.0.1", 1));
    let t = rex_transport::open(&schema.uri()).expect("open");
    let err = t
        .counts("foo")
        .await
        .expect_err("the certificate names localhost");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );

    let verify_ca = schema
        .uri()
        .replace("sslmode=verify-full", "sslmode=verify-ca");
    let t = rex_transport::open(&verify_ca).expect("open");
    t.counts("foo")
        .await
        .expect("verify-ca does not check the host name");
}

/// Wait until the transport whose connections are named `application_name` has run the check
/// at the start of `wait` (its pooled connection is idle after that query). From then on,
/// only a notification (or the timeout) ends that `wait`. Polls the server's view of its
/// sessions: there is nothing else to observe.
async fn until_waiter_checked(admin: &tokio_postgres::Client, application_name: &str) {
    for _ in 0..1200 {
        let checked: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND state = 'idle' AND query LIKE '%min(run_at)%'",
                &[&application_name],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if checked > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{application_name} never started waiting");
}

async fn submit(t: &Arc<dyn Transport>, queue: &str) -> i64 {
    t.submit(queue, Payload::new(), &SubmitOptions::default())
        .await
        .expect("submit")
        .expect("no idempotency key")
}

/// `waiter.wait(queue)` ends when `submitter`, another instance with its own connections,
/// submits to `queue`; the task is then claimable through `waiter`.
async fn woken_across_instances(
    admin: &tokio_postgres::Client,
    waiter: &Arc<dyn Transport>,
    waiter_name: &str,
    submitter: &Arc<dyn Transport>,
    queue: &'static str,
) {
    let waiting = {
        let waiter = Arc::clone(waiter);
        tokio::spawn(async move { waiter.wait(queue, LONG_WAIT).await })
    };
    until_waiter_checked(admin, waiter_name).await;
    let id = submit(submitter, queue).await;
    tokio::time::timeout(GENEROUS, waiting)
        .await
        .expect("the waiter is woken up by the other instance's submit")
        .expect("waiter")
        .expect("wait");
    let task = waiter
        .claim(queue, "owner", LEASE)
        .await
        .expect("claim")
        .expect("the submitted task is claimable");
    assert_eq!(task.id, id);
}

/// NOTIFY reaches a waiter through its own listening connection, from another instance.
#[tokio::test]
async fn wait_is_woken_by_another_instance() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let waiter_name = format!("{}_waiter", schema.name);
    let waiter = schema.open_as(&waiter_name);
    let submitter = schema.open_as(&format!("{}_submitter", schema.name));
    let admin = admin(&server).await;
    woken_across_instances(&admin, &waiter, &waiter_name, &submitter, "crossed").await;
}

/// A delayed task ends a `wait` when it becomes ready, without any notification.
#[tokio::test]
async fn wait_returns_when_a_delayed_task_is_due() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = rex_transport::open(&schema.uri()).expect("open");
    let run_at = SystemTime::now() + Duration::from_millis(200);
    let opts = SubmitOptions {
        run_at: Some(run_at),
        ..SubmitOptions::default()
    };
    let id = t
        .submit("later", Payload::new(), &opts)
        .await
        .expect("submit")
        .expect("id");
    tokio::time::timeout(GENEROUS, t.wait("later", LONG_WAIT))
        .await
        .expect("woken when the task is due")
        .expect("wait");
    let task = t.claim("later", "owner", LEASE).await.expect("claim");
    assert_eq!(task.map(|task| task.id), Some(id));
}

/// Eight claimers on two instances (separate pools) get every task exactly once.
#[tokio::test]
async fn claimers_on_two_instances_share_the_tasks() {
    const TASKS: usize = 200;
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let instances = [
        rex_transport::open(&schema.uri()).expect("open"),
        rex_transport::open(&schema.uri()).expect("open"),
    ];
    let queue = "shared";
    let mut submitted = BTreeSet::new();
    for n in 0..TASKS {
        submitted.insert(submit(&instances[n % 2], queue).await);
    }
    let claimed = rex_transport_conformance::claim_concurrently(&instances, queue, 8).await;
    rex_transport_conformance::assert_claimed_once(claimed, &submitted);
    assert!(
        instances[0]
            .counts(queue)
            .await
            .expect("counts")
            .is_drained()
    );
}

/// When the server drops every connection (as on a restart), operations fail with retryable
/// errors at most until the pool has replaced its connections, and the listening connection
/// comes back too: the same transport works again.
#[tokio::test]
async fn the_same_transport_recovers_when_its_connections_are_killed() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let name = format!("{}_victim", schema.name);
    let t = schema.open_as(&name);
    let other = schema.open_as(&format!("{}_other", schema.name));
    let admin = admin(&server).await;

    let first = submit(&t, "before").await;
    // A task is ready, so this returns once the listener is up and the check is done.
    tokio::time::timeout(GENEROUS, t.wait("before", LONG_WAIT))
        .await
        .expect("ready at once")
        .expect("wait");
    // Killed from another thread while this runtime is blocked, so that the transport's
    // connections cannot notice before the next operation uses them — as after a restart.
    let killed = admin_blocking(
        &server,
        format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000))
             FROM pg_stat_activity WHERE application_name = '{name}'"
        ),
    )
    .expect("terminate");
    let killed: i64 = killed.expect("a count").parse().expect("a number");
    assert!(killed >= 2, "the pooled and the listening connection");

    let mut failures = Vec::new();
    let task = loop {
        match t.claim("before", "owner", LEASE).await {
            Ok(task) => break task,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(matches!(e, TransportError::Unavailable { .. }));
                failures.push(e.to_string());
                assert!(failures.len() < 20, "never recovered: {failures:?}");
            }
        }
    };
    assert_eq!(task.map(|task| task.id), Some(first));

    woken_across_instances(&admin, &t, &name, &other, "after").await;
}

/// Without a server every operation is a retryable error that never shows the password, and
/// `wait` still waits (callers use it to back off).
#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error() {
    let t = rex_transport::open("postgresql://rex:s3cret@127.0.0.1:1/db?connect_timeout=5")
        .expect("opening does not connect");
    assert_eq!(
        t.describe(),
        "PostgreSQL(postgresql://rex:***@127.0.0.1:1/db, schema asynctask)"
    );
    let err = t
        .claim("foo", "owner", LEASE)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(!message.contains("s3cret"), "{message}");
    assert!(message.contains("rex:***@127.0.0.1:1"), "{message}");
    let err = t
        .submit("foo", Payload::new(), &SubmitOptions::default())
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_retryable(), "{err}");
    t.wait("foo", Duration::from_millis(50))
        .await
        .expect("waiting is not an error");
}

/// PostgreSQL text cannot hold NUL characters: payloads keep them (as JSON escapes), and a
/// failure reason holding one is recorded with a replacement character rather than failing.
#[tokio::test]
async fn nul_characters_break_nothing() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = rex_transport::open(&schema.uri()).expect("open");
    let payload = rex_transport::normalize_payload(serde_json::json!({"text": "a\u{0}b"}))
        .expect("an object");
    t.submit("nul", payload.clone(), &SubmitOptions::default())
        .await
        .expect("submit");
    let task = t
        .claim("nul", "owner", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(task.payload, payload);
    assert!(
        t.fail(
            &task.lease(),
            &rex_transport::Failure::error("bad\u{0}news"),
            None
        )
        .await
        .expect("fail")
    );
    let failed = t.failed(Some("nul")).await.expect("failed");
    assert_eq!(failed[0].last_error.as_deref(), Some("bad\u{fffd}news"));
    assert_eq!(failed[0].payload, payload);
}

/// After a full window a claim starts where the previous one ended (`claim_from.rs`), not at
/// the head of the claim order: a task this instance releases is still claimed first, and
/// one another process releases behind that point is claimed by the next claim that scans
/// from the head (at the latest one second on, or after a window that was not full).
#[tokio::test]
async fn claims_after_a_full_window_still_find_released_tasks() {
    const LEASE: Duration = Duration::from_secs(60);
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = rex_transport::open(&schema.uri()).expect("open");
    let other = rex_transport::open(&schema.uri()).expect("open");
    let queue = "resume";
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(submit(&t, queue).await);
    }
    let claim = |n: usize| {
        let t = t.clone();
        async move {
            t.claim_batch(queue, "me", LEASE, n)
                .await
                .expect("claim_batch")
        }
    };
    let first = claim(4).await;
    assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), ids[..4]);
    assert!(
        t.release(&first[1].lease(), "not started")
            .await
            .expect("release")
    );
    let second = claim(4).await;
    assert_eq!(
        second.iter().map(|t| t.id).collect::<Vec<_>>(),
        [ids[1], ids[4], ids[5], ids[6]],
        "released by this instance: back in its place, claimed first"
    );

    let third = claim(3).await;
    assert_eq!(third.iter().map(|t| t.id).collect::<Vec<_>>(), ids[7..]);
    assert!(
        other
            .release(&second[1].lease(), "its master died")
            .await
            .expect("release")
    );
    let mut found = Vec::new();
    for _ in 0..2 {
        found.extend(claim(3).await.into_iter().map(|t| t.id));
    }
    assert_eq!(
        found,
        [ids[4]],
        "released elsewhere: found within two claims"
    );
}
