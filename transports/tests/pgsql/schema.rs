//! The schema's life: created once by many instances at once, migrated from older versions
//! (newer ones refused), vacuumed when the server's autovacuum is off.

use super::*;

/// Many instances starting at once on a fresh schema create it once, without errors.
#[tokio::test]
async fn many_instances_create_the_schema_together() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let starting: Vec<_> = (0..6)
        .map(|_| {
            let t = rex_transport::open(&schema.uri()).expect("open");
            tokio::spawn(async move { t.counts("first").await })
        })
        .collect();
    for start in starting {
        let counts = start.await.expect("no panic").expect("counts");
        assert!(counts.is_drained());
    }
}

/// A server with autovacuum off (as this CI's is) would let the tasks table fill with dead
/// rows that every claim scans past: `maintain` vacuums it once enough are dead, and only then.
#[tokio::test]
async fn maintenance_vacuums_the_tasks_when_autovacuum_is_off() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let t = schema.open_as(&format!("{}_maint", schema.name));
    submit(&t, "churn").await; // creates the schema
    assert_eq!(
        t.maintain().await.expect("maintain"),
        None,
        "nothing is dead yet"
    );

    let admin = admin(&server).await;
    let autovacuum: String = admin
        .query_one("SHOW autovacuum", &[])
        .await
        .expect("SHOW")
        .get(0);
    let tasks = format!("\"{}\".tasks", schema.name);
    // 15,000 tasks come and go, as a busy queue's would.
    admin
        .batch_execute(&format!(
            "INSERT INTO {tasks} (queue, payload, state, run_at, created_at)
               SELECT 'churn', '{{}}', 'pending', now(), now() FROM generate_series(1, 15000);
             DELETE FROM {tasks} WHERE queue = 'churn'"
        ))
        .await
        .expect("churn");
    let dead = || async {
        admin
            .query_one(
                "SELECT coalesce(n_dead_tup, 0), last_vacuum IS NOT NULL
                 FROM pg_stat_user_tables WHERE relid = $1::text::regclass",
                &[&tasks],
            )
            .await
            .expect("pg_stat_user_tables")
    };
    // A backend publishes its statistics at most once a second, between queries.
    for _ in 0..600 {
        if dead().await.get::<_, i64>(0) >= 15_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        dead().await.get::<_, i64>(0) >= 15_000,
        "the churn never showed"
    );

    let done = t.maintain().await.expect("maintain");
    if autovacuum == "on" {
        assert_eq!(done, None, "autovacuum's job");
        return;
    }
    let done = done.expect("a vacuum");
    assert!(done.starts_with(&format!("Vacuumed {tasks} (")), "{done}");
    let row = dead().await;
    assert!(row.get::<_, bool>(1), "VACUUM ran");
    assert!(row.get::<_, i64>(0) < 15_000, "dead rows remain");
    assert_eq!(t.maintain().await.expect("maintain"), None, "already clean");
    // The lock was given back: another process can vacuum next time.
    let held: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND objid = hashtext($1::text)::oid",
            &[&schema.name],
        )
        .await
        .expect("pg_locks")
        .get(0);
    assert_eq!(held, 0, "the vacuum lock is still held");
}

/// A version 1 schema (made by an older rex) is migrated on first use, its tasks kept (a failed
/// one's `run_at` becomes the time it failed); a schema newer than this rex knows is refused
/// rather than misused.
#[tokio::test]
async fn older_schemas_are_migrated_and_newer_ones_refused() {
    let Some(server) = server() else { return };
    let schema = Schema::fresh(&server);
    let s = format!("\"{}\"", schema.name);
    let old = schema.open_as(&format!("{}_old", schema.name));
    let first = submit(&old, "kept").await;
    submit(&old, "broken").await;
    let broken = old.claim("broken", "me", LEASE).await.expect("claim");
    let broken = broken.expect("a task");
    let failure = rex_transport::Failure::error("gave up");
    assert!(
        old.fail(&broken.lease(), &failure, None)
            .await
            .expect("fail")
    );
    drop(old);
    // Back to what version 1 looked like.
    let admin = admin(&server).await;
    admin
        .batch_execute(&format!(
            "DROP INDEX {s}.tasks_pending_by_due;
             CREATE INDEX tasks_pending_by_run_at ON {s}.tasks (queue, run_at) WHERE state = 'pending';
             DROP INDEX {s}.tasks_running, {s}.tasks_by_queue;
             CREATE INDEX tasks_by_queue ON {s}.tasks (queue, state, id);
             CREATE INDEX tasks_running_by_lease ON {s}.tasks (lease_until) WHERE state = 'running';
             CREATE INDEX tasks_running_by_owner ON {s}.tasks (owner) WHERE state = 'running';
             DROP TABLE {s}.paused_queues, {s}.masters, {s}.history, {s}.paused_schedules,
                 {s}.cancel_requests, {s}.completed, {s}.history_recordings;
             ALTER TABLE {s}.tasks DROP COLUMN started_at;
             UPDATE {s}.tasks SET run_at = '2001-01-01' WHERE state = 'failed';
             DELETE FROM {s}.schema_version; INSERT INTO {s}.schema_version VALUES (1);"
        ))
        .await
        .expect("make it version 1");

    let t = schema.open_as(&format!("{}_new", schema.name));
    let task = t
        .claim("kept", "me", LEASE)
        .await
        .expect("claim")
        .expect("a task");
    assert_eq!(task.id, first);
    let indexes: Vec<String> = admin
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'tasks'
             ORDER BY indexname",
            &[&schema.name],
        )
        .await
        .expect("pg_indexes")
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Version 2's claim order; version 10's one index of running tasks.
    assert_eq!(
        indexes,
        [
            "tasks_by_queue",
            "tasks_pending_by_due",
            "tasks_pkey",
            "tasks_running"
        ]
    );
    let failed = t.task(broken.id).await.expect("task").expect("kept");
    let finished_at = failed.history.last().expect("its attempt").finished_at;
    let run_at = failed.run_at.expect("run_at");
    assert_eq!(rex_transport::task::to_epoch_ms(run_at), finished_at);
    assert!(t.set_paused("kept", true).await.expect("the new tables"));
    t.record_history("schema-test", &[])
        .await
        .expect("the history table");
    assert!(
        t.history(None, 0)
            .await
            .expect("the history table")
            .is_empty()
    );
    let version: i32 = admin
        .query_one(&format!("SELECT max(version) FROM {s}.schema_version"), &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(version, 10);

    admin
        .batch_execute(&format!("INSERT INTO {s}.schema_version VALUES (99)"))
        .await
        .expect("make it newer");
    let err = schema
        .open_as(&format!("{}_older_rex", schema.name))
        .counts("kept")
        .await
        .expect_err("a newer schema");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("has version 99"), "{err}");
}
