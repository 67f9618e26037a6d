//! The RabbitMQ transport against a real broker: the conformance suite, plus what only a shared
//! broker shows (several transport instances and runtimes, wake-ups across them, a holder that
//! disappears, delays, idempotency keys racing).
//!
//! Set `REX_TEST_AMQP` (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`) to run them; unset, every
//! test is skipped. Each test uses a prefix of its own and deletes its broker objects at the
//! end, so runs may share a virtual host. No plugin is needed. `failures.rs` holds the cases
//! where something goes away: a holder, the connection, the broker's objects; `console.rs`
//! what the console sees across processes (pauses, running tasks, listings, heartbeats);
//! `events.rs` lifecycle events between instances.
#![cfg(feature = "amqp")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rex_transport::amqp::AmqpTransport;
use rex_transport::{
    Failure, Outcome, Payload, SubmitOptions, Transport, TransportError, schedule_key,
};

const LEASE: Duration = Duration::from_secs(600);

#[path = "../common/mod.rs"]
mod common;
mod console;
mod events;
mod failures;
use common::{unique_prefix, with_param};

/// The broker under test, or `None` to skip.
fn server() -> Option<String> {
    common::server("REX_TEST_AMQP")
}

/// `base` with `prefix=prefix` added to its query.
fn with_prefix(base: &str, prefix: &str) -> String {
    with_param(base, "prefix", prefix)
}

/// Deletes the broker objects of the given instances' prefix when dropped.
struct Cleanup {
    transports: Vec<Arc<AmqpTransport>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let transports = std::mem::take(&mut self.transports);
        // Best effort, on a runtime of its own: this runs inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for t in &transports {
                    let deleted =
                        tokio::time::timeout(Duration::from_secs(30), t.delete_everything()).await;
                    if !matches!(deleted, Ok(Ok(()))) {
                        eprintln!("cleanup of {}: {deleted:?}", t.describe());
                    }
                }
            });
        })
        .join();
    }
}

/// A fresh prefix on the test broker: `instances` transports sharing it, and its cleanup.
fn open(instances: usize) -> Option<(Vec<Arc<AmqpTransport>>, Cleanup)> {
    open_on(&server()?, instances)
}

fn open_on(server: &str, instances: usize) -> Option<(Vec<Arc<AmqpTransport>>, Cleanup)> {
    let uri = with_prefix(server, &unique_prefix());
    let transports: Vec<Arc<AmqpTransport>> = (0..instances)
        .map(|_| Arc::new(AmqpTransport::open_uri(&uri).expect("open")))
        .collect();
    let cleanup = Cleanup {
        transports: transports.clone(),
    };
    Some((transports, cleanup))
}

async fn fixture() -> Option<(Arc<dyn Transport>, Cleanup)> {
    let (mut transports, cleanup) = open(1)?;
    Some((transports.remove(0) as Arc<dyn Transport>, cleanup))
}

rex_transport_conformance::conformance_suite!(amqp, fixture());

/// The broker's TLS listener (`amqps://` with `cacertfile`, `certfile`, `keyfile`), e.g. the
/// one `.ci/tls-servers` adds: client certificates required.
fn tls_server() -> Option<String> {
    let uri = common::server("REX_TEST_AMQP_TLS");
    if uri.is_none() {
        eprintln!("skipped: REX_TEST_AMQP_TLS is not set");
    }
    uri
}

rex_transport_conformance::conformance_suite!(amqp_tls, async {
    let (mut transports, cleanup) = open_on(&tls_server()?, 1)?;
    Some((transports.remove(0) as Arc<dyn Transport>, cleanup))
});

/// Over TLS: a waiter on one instance is woken by another's submit.
#[tokio::test]
async fn tls_wait_is_woken_by_another_instance() {
    let Some((transports, _cleanup)) = tls_server().and_then(|server| open_on(&server, 2)) else {
        return;
    };
    woken_across(&transports).await;
}

/// The broker checks client certificates and the client checks the broker's.
#[tokio::test]
async fn tls_checks_both_ends() {
    let Some(server) = tls_server() else { return };
    common::tls_checks_both_ends(&server, "cacertfile", ["certfile", "keyfile"]).await;
}

fn skipped() {
    eprintln!("skipped: REX_TEST_AMQP is not set");
}

fn payload(n: usize) -> Payload {
    let mut payload = Payload::new();
    payload.insert("n".into(), n.into());
    payload
}

/// Opening parses the URI without connecting; `describe` hides the password.
#[test]
fn uris() {
    let t = rex_transport::open("amqp://guest:guest@127.0.0.1:5672/%2f").expect("open");
    assert_eq!(
        t.describe(),
        "AMQP(amqp://guest:***@127.0.0.1:5672/%2f, prefix rex)"
    );
    assert!(t.is_shared() && t.leases_held_by_broker());

    let t = rex_transport::open("amqp://user:s3cret@localhost/prod?prefix=my_app&heartbeat=30")
        .expect("open");
    assert_eq!(
        t.describe(),
        "AMQP(amqp://user:***@localhost/prod?heartbeat=30, prefix my_app)"
    );
    for bad in [
        "amqp://:s3cret@localhost/?prefix=Nope",
        "amqp://u:s3cret@localhost/?tls=1",
        "amqp://u:s3cret@localhost:x/",
    ] {
        let err = rex_transport::open(bad).err().expect("refused");
        assert!(matches!(err, TransportError::InvalidUri { .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
    let err = rex_transport::open("amqps://u:s3cret@localhost/?cacertfile=/nonexistent.pem")
        .err()
        .expect("no such CA file");
    assert!(matches!(err, TransportError::InvalidUri { .. }), "{err}");
    assert!(err.to_string().contains("cacertfile"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

/// A loopback port nothing listens on (as far as the system knows now).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// A broker that cannot be reached gives the retryable error, without the password, and the
/// next attempts back off instead of hammering it.
#[tokio::test]
async fn unreachable_brokers_are_unavailable() {
    let port = free_port();
    let t = rex_transport::open(&format!("amqp://u:s3cret@127.0.0.1:{port}/%2f")).expect("open");
    let err = t.counts("foo").await.expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    // A wait fails (it does not sleep its timeout away as if the queue were empty).
    let err = t
        .wait("foo", Duration::from_secs(600))
        .await
        .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err}");
    let err = t
        .submit("foo", Payload::new(), &SubmitOptions::default())
        .await
        .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
}

/// `wait` on one instance is woken by a submit on another (a broker push, not polling).
#[tokio::test]
async fn wait_is_woken_by_another_instance() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    woken_across(&transports).await;
}

async fn woken_across(transports: &[Arc<AmqpTransport>]) {
    let (waiter_side, submitter) = (Arc::clone(&transports[0]), &transports[1]);
    let queue = "wakeup";
    let waiter = {
        let t = Arc::clone(&waiter_side);
        tokio::spawn(async move {
            let start = Instant::now();
            t.wait(queue, Duration::from_secs(600))
                .await
                .map(|()| start.elapsed())
        })
    };
    // Submit once the waiter is blocked on its signal queue, so that the wake-up, not the
    // first check, is what ends the wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiter_side.blocked_waiters() == 0 {
        assert!(Instant::now() < deadline, "the waiter never blocked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let submitted = Instant::now();
    submitter
        .submit(queue, Payload::new(), &SubmitOptions::default())
        .await
        .expect("submit");
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken up well before the wait's own timeout")
        .expect("waiter panicked")
        .expect("wait");
    eprintln!("woken {:?} after the submit", submitted.elapsed());
    let task = waiter_side
        .claim(queue, "owner", LEASE)
        .await
        .expect("claim");
    assert!(task.is_some(), "the submitted task is claimable");
}

/// A task delayed by 300 ms is not claimable before, and becomes claimable (waking a waiter)
/// soon after, through the delay queues and without plugins.
#[tokio::test]
async fn delayed_tasks_become_ready_on_time() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let queue = "delayed";
    // Declare the queue's objects first (a wait does): declaring takes tens of milliseconds,
    // which this test should not count against the delay.
    transports[1]
        .wait(queue, Duration::ZERO)
        .await
        .expect("wait");
    let run_at = SystemTime::now() + Duration::from_millis(300);
    let opts = SubmitOptions {
        run_at: Some(run_at),
        ..SubmitOptions::default()
    };
    let id = transports[1]
        .submit(queue, Payload::new(), &opts)
        .await
        .expect("submit")
        .expect("no key");
    let counts = transports[0].counts(queue).await.expect("counts");
    assert_eq!((counts.ready, counts.delayed), (0, 1));
    assert!(
        transports[0]
            .claim(queue, "owner", LEASE)
            .await
            .expect("claim")
            .is_none(),
        "not claimable before run_at"
    );
    // Wake-ups may be spurious: wait until the claim succeeds, as a worker does.
    let claimed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            transports[0]
                .wait(queue, Duration::from_secs(600))
                .await
                .expect("wait");
            if let Some(task) = transports[0]
                .claim(queue, "owner", LEASE)
                .await
                .expect("claim")
            {
                return task;
            }
        }
    })
    .await
    .expect("the delayed task became claimable well before the wait's own timeout");
    // Due times are kept to the millisecond: claimable from run_at's millisecond on.
    let claimed_at = SystemTime::now();
    let ms = |t: SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis()
    };
    assert!(ms(claimed_at) >= ms(run_at), "claimed before run_at");
    let late = claimed_at.duration_since(run_at).unwrap_or_default();
    eprintln!("claimed {late:?} after run_at");
    assert_eq!((claimed.id, claimed.attempt), (id, 1));
}

/// Two instances submitting the same idempotency keys at once enqueue each key's task once;
/// `last_fire` sees the fires of both.
#[tokio::test]
async fn idempotency_keys_race_across_instances() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let queue = "keyed";
    let keyed = |key: String| SubmitOptions {
        idempotency_key: Some(key),
        ..SubmitOptions::default()
    };
    const KEYS: usize = 20;
    let mut enqueued = 0;
    for n in 0..KEYS {
        let opts = keyed(format!("key_{n}"));
        let (first, second) = tokio::join!(
            transports[0].submit(queue, payload(n), &opts),
            transports[1].submit(queue, payload(n), &opts),
        );
        let (first, second) = (first.expect("submit"), second.expect("submit"));
        assert!(
            first.is_some() != second.is_some(),
            "key {n}: {first:?} {second:?}"
        );
        enqueued += 1;
    }
    assert_eq!(
        transports[1].counts(queue).await.expect("counts").ready,
        enqueued
    );
    // A key too long for a queue name is hashed, and still used once.
    let long = keyed("k".repeat(400));
    assert!(
        transports[0]
            .submit(queue, Payload::new(), &long)
            .await
            .expect("submit")
            .is_some()
    );
    assert_eq!(
        transports[1]
            .submit(queue, Payload::new(), &long)
            .await
            .expect("submit"),
        None
    );

    let at = rex_transport::task::from_epoch_ms;
    assert_eq!(
        transports[0].last_fire("nightly").await.expect("last_fire"),
        None
    );
    let fires = [(0, 1_000), (1, 5_000), (0, 3_000), (1, 2_000), (0, 5_000)];
    let submits = fires.iter().map(|&(instance, ms)| {
        let t = Arc::clone(&transports[instance]);
        let opts = keyed(schedule_key("nightly", at(ms)));
        async move { t.submit(queue, Payload::new(), &opts).await }
    });
    let mut results = Vec::new();
    for submit in submits.collect::<Vec<_>>() {
        results.push(tokio::spawn(submit));
    }
    let mut fired = 0;
    for result in results {
        if result.await.expect("submitter").expect("submit").is_some() {
            fired += 1;
        }
    }
    assert_eq!(fired, 4, "5 000 was fired twice, enqueued once");
    for t in &transports {
        assert_eq!(
            t.last_fire("nightly").await.expect("last_fire"),
            Some(at(5_000))
        );
    }
    assert_eq!(
        transports[0].counts(queue).await.expect("counts").ready,
        enqueued + 1 + 4
    );
}

/// Claimers on two instances, each used from two runtimes (threads), get each of 500 tasks
/// exactly once.
#[tokio::test]
async fn claimers_on_two_instances_and_runtimes_get_each_task_once() {
    const TASKS: usize = 500;
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let queue = "shared";
    let mut submitted = BTreeSet::new();
    for n in 0..TASKS {
        let id = transports[n % 2]
            .submit(queue, payload(n), &SubmitOptions::default())
            .await
            .expect("submit")
            .expect("no key");
        submitted.insert(id);
    }
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let t = Arc::clone(&transports[i % 2]);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(rex_transport_conformance::claim_concurrently(
                    &[t],
                    queue,
                    2,
                ))
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for thread in threads {
        claimed.extend(thread.join().expect("claimer thread panicked"));
    }
    rex_transport_conformance::assert_claimed_once(claimed, &submitted);
    let counts = transports[0].counts(queue).await.expect("counts");
    assert!(counts.is_drained() && counts.failed == 0, "{counts:?}");
}

/// A rough throughput figure, run by hand: `cargo test -p rex-transport --test amqp --
/// --ignored --nocapture throughput`. One runtime submits N tasks one at a time, then claims
/// and completes them one at a time; then several concurrent submitters and claimers.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn throughput() {
    const N: usize = 2000;
    let Some((transports, _cleanup)) = open(1) else {
        return skipped();
    };
    let t = Arc::clone(&transports[0]);
    let queue = "bench";
    t.counts(queue).await.expect("connect first");
    let start = Instant::now();
    for n in 0..N {
        t.submit(queue, payload(n), &SubmitOptions::default())
            .await
            .expect("submit");
    }
    let submitted = start.elapsed();
    let start = Instant::now();
    while let Some(task) = t.claim(queue, "owner", LEASE).await.expect("claim") {
        assert!(t.complete(&task.lease(), &[]).await.expect("complete"));
    }
    let drained = start.elapsed();
    eprintln!(
        "sequential: submit {:.0}/s ({:?} each), claim+complete {:.0}/s ({:?} each)",
        N as f64 / submitted.as_secs_f64(),
        submitted / N as u32,
        N as f64 / drained.as_secs_f64(),
        drained / N as u32,
    );

    const TASKS: usize = 8;
    let start = Instant::now();
    let submitters: Vec<_> = (0..TASKS)
        .map(|_| {
            let t = Arc::clone(&t);
            tokio::spawn(async move {
                for n in 0..N / TASKS {
                    t.submit(queue, payload(n), &SubmitOptions::default())
                        .await
                        .expect("submit");
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.await.expect("submitter");
    }
    let submitted = start.elapsed();
    let start = Instant::now();
    let claimers: Vec<_> = (0..TASKS)
        .map(|_| {
            let t = Arc::clone(&t);
            tokio::spawn(async move {
                while let Some(task) = t.claim(queue, "owner", LEASE).await.expect("claim") {
                    assert!(t.complete(&task.lease(), &[]).await.expect("complete"));
                }
            })
        })
        .collect();
    for claimer in claimers {
        claimer.await.expect("claimer");
    }
    let drained = start.elapsed();
    eprintln!(
        "{TASKS} concurrent tasks: submit {:.0}/s, claim+complete {:.0}/s",
        N as f64 / submitted.as_secs_f64(),
        N as f64 / drained.as_secs_f64(),
    );
}
