//! What happens when something goes away under the RabbitMQ transport: a holder of claims, the
//! connection (cut by a proxy only this test sees), the broker objects themselves.

use super::*;
use rex_transport::{Submit, TaskId};

/// Two instances on one prefix: `a`, which stays and cleans up, and `b`, a holder of claims
/// that the test drops (only `a` cleans up: `b` must really go away).
fn holder_and_claimer() -> Option<(Arc<AmqpTransport>, Arc<AmqpTransport>, Cleanup)> {
    let (transports, _) = open(2)?;
    let (a, b) = (Arc::clone(&transports[0]), Arc::clone(&transports[1]));
    let cleanup = Cleanup {
        transports: vec![Arc::clone(&a)],
    };
    Some((a, b, cleanup))
}

/// The broker returns the task of a holder that disappeared; the next claim hands out the lost
/// attempt marked `lost`, for the claimer to settle as a crash, and no task is lost.
#[tokio::test]
async fn a_lost_holders_task_comes_back_as_a_crash() {
    let Some((a, b, _cleanup)) = holder_and_claimer() else {
        return skipped();
    };
    let queue = "lost";
    let mut submitted = BTreeSet::new();
    for n in 0..5 {
        let id = a
            .submit(queue, payload(n), &SubmitOptions::default())
            .await
            .expect("submit")
            .expect("no key");
        submitted.insert(id);
    }
    let lost = b
        .claim(queue, "b_owner", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!((lost.attempt, lost.crashes), (1, 0));
    assert_eq!(a.counts(queue).await.expect("counts").ready, 4);
    // A waiter's consumer must not keep the connection open either.
    b.wait(queue, Duration::from_millis(1)).await.expect("wait");
    drop(b); // closes its connection: the broker returns the delivery
    let dropped = Instant::now();

    let mut claimed = BTreeSet::new();
    let mut recorded = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while claimed.len() < submitted.len() {
        assert!(Instant::now() < deadline, "claimed only {claimed:?}");
        let Some(task) = a.claim(queue, "a_owner", LEASE).await.expect("claim") else {
            // The broker has not returned the lost delivery yet.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        assert!(claimed.insert(task.id), "{} claimed twice", task.id);
        if task.id == lost.id {
            eprintln!(
                "the lost task came back {:?} after the drop",
                dropped.elapsed()
            );
            recorded = Some(task);
        } else {
            assert_eq!((task.attempt, task.crashes, task.lost), (1, 0, false));
            assert!(a.complete(&task.lease(), &[]).await.expect("complete"));
        }
    }
    assert_eq!(claimed, submitted, "nothing is lost");
    let recorded = recorded.expect("the lost task came back");
    assert_eq!(
        (
            recorded.attempt,
            recorded.errors,
            recorded.crashes,
            recorded.lost
        ),
        (1, 0, 0, true),
        "the lost attempt itself, to be settled"
    );
    assert_eq!(recorded.payload, lost.payload);
    assert!(
        a.fail(
            &recorded.lease(),
            &Failure::crash("worker lost"),
            Some(std::time::SystemTime::now())
        )
        .await
        .expect("fail")
    );
    let retried = a
        .claim(queue, "a_owner", LEASE)
        .await
        .expect("claim")
        .expect("the crash is retried at once");
    assert_eq!(
        (retried.id, retried.attempt, retried.crashes, retried.lost),
        (lost.id, 2, 1, false)
    );
    assert!(
        a.fail(&retried.lease(), &Failure::error("Oops!"), None)
            .await
            .expect("fail")
    );
    let summary = a
        .failed(Some(queue))
        .await
        .expect("failed")
        .pop()
        .expect("the failed task");
    let history: Vec<_> = summary
        .history
        .iter()
        .map(|h| (h.attempt, h.owner.as_str(), h.outcome))
        .collect();
    assert_eq!(
        history,
        [
            (1, "a_owner", Outcome::Crash),
            (2, "a_owner", Outcome::Error)
        ]
    );
    assert!(
        summary.history[0]
            .reason
            .as_deref()
            .is_some_and(|reason| reason.starts_with("worker lost")),
        "{:?}",
        summary.history[0]
    );
    let counts = a.counts(queue).await.expect("counts");
    assert!(counts.is_drained() && counts.failed == 1, "{counts:?}");
}

/// A holder's whole window comes back when it disappears: every task of its batch claim is
/// handed out again marked `lost`, uncharged so far. Releasing one (what a worker does with a
/// loss nobody saw) counts it in `unwitnessed_returns`, keeps its attempt and crash counts, and
/// the copy that comes back is no longer lost.
#[tokio::test]
async fn a_lost_holders_window_comes_back_and_a_release_counts_the_unwitnessed_return() {
    let Some((a, b, _cleanup)) = holder_and_claimer() else {
        return skipped();
    };
    let queue = "lost_window";
    let tasks: Vec<Submit> = (0..8)
        .map(|n| Submit {
            queue: queue.into(),
            payload: payload(n),
        })
        .collect();
    let ids = a.submit_batch(&tasks, None).await.expect("submit");
    let window = b
        .claim_batch(queue, "b_owner", LEASE, 5)
        .await
        .expect("claim");
    let window_ids: Vec<TaskId> = window.iter().map(|t| t.id).collect();
    assert_eq!(window_ids, ids[..5], "one pipelined claim, in queue order");
    drop(b);

    let mut back = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while back.len() < ids.len() {
        assert!(Instant::now() < deadline, "got back only {back:?}");
        let got = a
            .claim_batch(queue, "a_owner", LEASE, 8)
            .await
            .expect("claim");
        if got.is_empty() {
            // The broker has not returned the lost deliveries yet.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        back.extend(got);
    }
    let lost: Vec<TaskId> = back.iter().filter(|t| t.lost).map(|t| t.id).collect();
    assert_eq!(lost, ids[..5], "the whole window, and only it, is lost");
    assert!(
        back.iter()
            .all(|t| (t.attempt, t.crashes, t.unwitnessed_returns) == (1, 0, 0))
    );
    // The first lost one is given back; the others are done.
    let (given, done): (Vec<_>, Vec<_>) = back.iter().partition(|t| t.id == ids[0]);
    for task in done {
        assert!(a.complete(&task.lease(), &[]).await.expect("complete"));
    }
    assert!(
        a.release(&given[0].lease(), "nobody saw")
            .await
            .expect("release")
    );
    let again = a
        .claim(queue, "a_owner", LEASE)
        .await
        .expect("claim")
        .expect("given back");
    assert_eq!(
        (
            again.id,
            again.attempt,
            again.crashes,
            again.lost,
            again.unwitnessed_returns
        ),
        (ids[0], 1, 0, false, 1)
    );
    assert!(a.complete(&again.lease(), &[]).await.expect("complete"));
    assert!(a.counts(queue).await.expect("counts").is_drained());
}

/// Objects deleted behind a running process's back (by an operator, or another process's
/// cleanup): the first operation that meets their absence fails with the retryable error, and
/// the next ones declare them again.
#[tokio::test]
async fn deleted_objects_are_declared_again() {
    let Some((transports, _cleanup)) = open(2) else {
        return skipped();
    };
    let (t, operator) = (&transports[0], &transports[1]);
    let queue = "deleted";
    let opts = SubmitOptions::default();
    t.submit(queue, payload(1), &opts).await.expect("submit");
    operator.wait(queue, Duration::ZERO).await.expect("wait");
    operator.delete_everything().await.expect("delete");
    let mut errors = 0;
    let id = loop {
        match t.submit(queue, payload(2), &opts).await {
            Ok(id) => break id.expect("no key"),
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                errors += 1;
                assert!(errors < 5, "{e}");
            }
        }
    };
    let task = loop {
        match t.claim(queue, "owner", LEASE).await {
            Ok(task) => break task.expect("the new task"),
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                errors += 1;
                assert!(errors < 5, "{e}");
            }
        }
    };
    assert_eq!(task.id, id);
    assert!(t.complete(&task.lease(), &[]).await.expect("complete"));
    assert!(t.counts(queue).await.expect("counts").is_drained());
}

/// A TCP proxy to the broker whose connections can be cut (a network failure that only this
/// test sees).
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<u64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(broker: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let port = listener.local_addr().expect("address").port();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = tokio::net::TcpStream::connect(&broker).await else {
                    continue;
                };
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                    // Both sockets are dropped here: each side sees its peer go away.
                });
            }
        });
        Proxy {
            port,
            cut,
            accepting,
        }
    }

    /// Cut every connection made so far (new ones are still accepted).
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}

/// `amqp://user:pass@host:port/vhost` → (`host:port`, the URI with `127.0.0.1:port` instead).
fn through(uri: &str, port: u16) -> (String, String) {
    let (scheme, rest) = uri.split_once("://").expect("a URI");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (format!("{userinfo}@"), hostport),
        None => (String::new(), authority),
    };
    let broker = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:5672")
    };
    (
        broker,
        format!("{scheme}://{userinfo}127.0.0.1:{port}{tail}"),
    )
}

/// After the connection drops: operations fail with the retryable error (or reconnect), the
/// lease taken through the lost connection is stale, and its task comes back — not marked
/// lost: this process lost it with its connection, nothing crashed, so no attempt is charged.
#[tokio::test]
async fn a_lost_connection_is_replaced_and_its_leases_are_stale() {
    let Some((transports, _cleanup)) = open(1) else {
        return skipped();
    };
    let prefix = transports[0].prefix().to_string();
    let server = server().expect("set");
    let (broker, _) = through(&server, 0);
    let proxy = Proxy::start(broker).await;
    let (_, proxied) = through(&server, proxy.port);
    let t = AmqpTransport::open_uri(&with_prefix(&proxied, &prefix)).expect("open");
    let queue = "cut";
    let id = t
        .submit(queue, payload(1), &SubmitOptions::default())
        .await
        .expect("submit")
        .expect("no key");
    let old = t
        .claim(queue, "owner", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    proxy.cut();
    // Until the cut is noticed, operations may still see the old connection; then they
    // fail with the retryable error (the claim's lease is dropped), and the next ones
    // connect again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        assert!(Instant::now() < deadline, "never reconnected");
        match t.counts(queue).await {
            Ok(counts) if t.owned_by("owner").await.expect("owned_by").is_empty() => break counts,
            Ok(_) => {}
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(counts.running, 0, "the lease went with its connection");
    assert!(
        !t.complete(&old.lease(), &[]).await.expect("complete"),
        "a lease of the lost connection is stale"
    );
    let again = loop {
        assert!(Instant::now() < deadline, "the task never came back");
        if let Some(task) = t.claim(queue, "owner", LEASE).await.expect("claim") {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        (again.id, again.attempt, again.crashes, again.lost),
        (id, 1, 0, false)
    );
    assert!(t.complete(&again.lease(), &[]).await.expect("complete"));
    assert!(t.counts(queue).await.expect("counts").is_drained());
}
