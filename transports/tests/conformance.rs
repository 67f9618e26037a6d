//! The conformance suite against the built-in transports.

use std::sync::Arc;
use std::time::Duration;

use rex_transport::memory::MemoryTransport;
use rex_transport::sqlite::SqliteTransport;
use rex_transport::{Payload, SubmitOptions, Transport};

rex_transport_conformance::conformance_suite!(memory, async {
    Arc::new(MemoryTransport::new()) as Arc<dyn Transport>
});

rex_transport_conformance::conformance_suite!(sqlite, async {
    // Each case gets its own file; the directory lives as long as the case.
    let dir = tempfile::tempdir().expect("temporary directory");
    let transport = SqliteTransport::open(dir.path().join("rex.sqlite3")).expect("open");
    (Arc::new(transport) as Arc<dyn Transport>, dir)
});

/// Both built-in transports wake a waiter as soon as a task is submitted, well before its
/// timeout (the suite only requires `wait` to return by its timeout).
#[tokio::test]
async fn wait_wakes_up_on_submit() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SqliteTransport::open(dir.path().join("rex.sqlite3")).expect("open");
    for t in [
        Arc::new(MemoryTransport::new()) as Arc<dyn Transport>,
        Arc::new(sqlite),
    ] {
        let waiter = {
            let t = Arc::clone(&t);
            tokio::spawn(async move {
                let start = std::time::Instant::now();
                t.wait("wakeup", Duration::from_secs(30))
                    .await
                    .expect("wait");
                start.elapsed()
            })
        };
        tokio::task::yield_now().await; // let the waiter start waiting
        t.submit("wakeup", Payload::new(), &SubmitOptions::default())
            .await
            .expect("submit");
        let waited = waiter.await.expect("waiter");
        assert!(
            waited < Duration::from_secs(5),
            "{}: waited {waited:?}",
            t.describe()
        );
    }
}

/// A delayed task wakes its waiter when it becomes ready.
#[tokio::test]
async fn wait_wakes_up_for_delayed_tasks() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SqliteTransport::open(dir.path().join("rex.sqlite3")).expect("open");
    for t in [
        Arc::new(MemoryTransport::new()) as Arc<dyn Transport>,
        Arc::new(sqlite),
    ] {
        let run_at = std::time::SystemTime::now() + Duration::from_millis(200);
        let opts = SubmitOptions {
            run_at: Some(run_at),
            ..SubmitOptions::default()
        };
        t.submit("delayed", Payload::new(), &opts)
            .await
            .expect("submit");
        let start = std::time::Instant::now();
        t.wait("delayed", Duration::from_secs(30))
            .await
            .expect("wait");
        assert!(start.elapsed() < Duration::from_secs(5), "{}", t.describe());
        // Due times are kept to the millisecond.
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis()
        };
        assert!(
            ms(std::time::SystemTime::now()) >= ms(run_at),
            "{}: woke up before run_at",
            t.describe()
        );
    }
}

#[test]
fn open_resolves_uris() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("sub/rex.sqlite3");
    let t = rex_transport::open(&format!("sqlite:{}", path.display())).expect("open");
    assert_eq!(t.describe(), format!("sqlite:{}", path.display()));
    assert!(t.is_shared());
    let t = rex_transport::open("memory:").expect("open");
    assert_eq!((t.describe().as_str(), t.is_shared()), ("memory:", false));
    let err = rex_transport::open("nope:x").err().expect("unknown scheme");
    assert_eq!(
        err.to_string(),
        r#""nope:x" does not resolve to a known transport"#
    );
}
