//! Who owns the layout: the schema version stored in the file (`PRAGMA user_version`) and the
//! migrations that bring a file to it, one SQL file each under `sql/migrations/`.
//!
//! Times are milliseconds since the Unix epoch. `history` is a JSON array of
//! [`Attempt`](crate::Attempt)s, appended to in SQL so that settlements stay single statements.

use rusqlite::{Connection, TransactionBehavior};

use super::TRANSPORT;
use super::connection::sql_error;
use crate::{Result, TransportError};

/// The migrations, in order: migration `n` (1-based, `sql/migrations/00n_*.sql`) brings a
/// file from schema version `n - 1` to `n`. A schema change is a new file here.
const MIGRATIONS: &[&str] = &[
    include_str!("sql/migrations/001_tasks_and_idempotency_keys.sql"),
    // Claims take the earliest due task, then the lowest id: one index entry to read. It
    // replaces the (queue, state, id) index, which served the same lookups.
    include_str!("sql/migrations/002_claim_order_index.sql"),
    // Lease look-ups (expired, owned by, renew) only ever concern running tasks, few at any
    // time: one partial index of them replaces the (state, lease_until) and (owner) indexes
    // that every submit, claim and completion of every pending task had to maintain.
    include_str!("sql/migrations/003_running_index.sql"),
    // The console: paused queues (claims check them) and masters' heartbeats.
    include_str!("sql/migrations/004_paused_queues_and_masters.sql"),
    // The failed tasks by id (the console's failed page, bulk actions over a filter): a
    // partial index, so the delivery path, which never writes a failed task, pays nothing.
    include_str!("sql/migrations/005_failed_index.sql"),
    // Throughput history: per-minute counters of each queue, added to by every master.
    include_str!("sql/migrations/006_history.sql"),
    // Paused schedules: a scheduler skips their fires.
    include_str!("sql/migrations/007_paused_schedules.sql"),
    // Cancellations of running attempts, for their masters.
    include_str!("sql/migrations/008_cancel_requests.sql"),
    // Completed tasks kept with their results; when each attempt started. Pruning finds a
    // queue's completed tasks by the claim-order index (queue, 'done', run_at).
    include_str!("sql/migrations/009_completed_tasks.sql"),
    // The names of the history recordings made: a repeated recording adds once.
    include_str!("sql/migrations/010_history_recordings.sql"),
];

/// The schema version this code reads and writes: the number of [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Create (or bring up to date) the schema on open. Under `BEGIN IMMEDIATE` so that two
/// processes opening a fresh file at once do not both create it.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let version = |conn: &Connection| {
        conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
    };
    if version(conn).map_err(sql_error)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    // Read again under the write lock: another process may have created it meanwhile.
    match version(&tx).map_err(sql_error)? {
        SCHEMA_VERSION => {}
        older @ 0..SCHEMA_VERSION => {
            for migration in &MIGRATIONS[older as usize..] {
                tx.execute_batch(migration).map_err(sql_error)?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sql_error)?;
        }
        other => {
            return Err(TransportError::Backend {
                transport: TRANSPORT.to_string(),
                message: format!(
                    "the database has schema version {other}; this rex supports version {SCHEMA_VERSION} (is it newer?)"
                ),
            });
        }
    }
    tx.commit().map_err(sql_error)
}

#[cfg(test)]
mod tests {
    use super::super::SqliteTransport;
    use super::*;

    #[test]
    fn a_version_1_file_is_migrated_in_place_and_keeps_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rex.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO tasks (queue, payload, state, run_at, created_at) VALUES ('jobs', '{}', 'pending', 0, 0)",
                [],
            )
            .unwrap();
        }
        let transport = SqliteTransport::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let indexed: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'tasks_claim_order'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let counts = runtime
            .block_on(crate::Transport::counts(&transport, "jobs"))
            .unwrap();
        assert_eq!(counts.ready, 1);
    }

    #[test]
    fn newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rex.sqlite3");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteTransport::open(&path).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
