//! Who owns the layout: the versioned migrations (`sql/migrations/`) and the code that creates
//! the schema or brings it up to date on first use, under an advisory lock so that many
//! processes starting at once do not race.

use super::connection::{Fail, OPERATION_TIMEOUT};
use super::{MIGRATION_LOCK_CLASS, PgsqlTransport, TRANSPORT};
use crate::TransportError;

/// The schema's version: the number of [`MIGRATIONS`] applied.
pub(super) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The DDL of each version, `{schema}` standing for the quoted schema name. Version 1 creates
/// the tables: queue names, owners and keys sort bytewise (`COLLATE "C"`) like the other
/// transports' — and so that schedule keys are contiguous ranges whatever the database's
/// collation. Version 2: the ready tasks' index also gives the claim order (due time, then id),
/// so a claim reads one index entry whatever the planner's statistics say. With the v1 index, a
/// table never analyzed (autovacuum off, or a burst of submits since the last analyze) got a
/// plan that sorted every pending task of the queue for each claim.
/// Version 3: what the console needs — the paused queues (which every claim checks) and the
/// masters' heartbeat records; a failed task's `run_at` becomes the time it failed.
/// Version 4: throughput history, per-minute counters of each queue. Version 5: paused
/// schedules. Version 6: cancel requests of running attempts. Version 7: completed tasks kept
/// (with their results) in a table of their own; each attempt's start. Version 8: a completed
/// task's last attempt in columns. Version 9: names of history recordings. Version 10: one
/// partial index of running tasks instead of three that held them (cheaper claims).
/// Version `n` is reached by running the first `n` of these, in order, in one transaction.
pub(super) const MIGRATIONS: [&str; 10] = [
    include_str!("sql/migrations/001_tables.sql"),
    include_str!("sql/migrations/002_claim_order_index.sql"),
    include_str!("sql/migrations/003_console.sql"),
    include_str!("sql/migrations/004_history.sql"),
    include_str!("sql/migrations/005_paused_schedules.sql"),
    include_str!("sql/migrations/006_cancel_requests.sql"),
    include_str!("sql/migrations/007_completed.sql"),
    include_str!("sql/migrations/008_completed_last_attempt.sql"),
    include_str!("sql/migrations/009_history_recordings.sql"),
    include_str!("sql/migrations/010_lean_running_indexes.sql"),
];

/// Whether a table (given as `"schema".name`) exists.
const TABLE_EXISTS: &str = include_str!("sql/queries/table_exists.sql");
/// Taken for the migration's transaction; `$1` is [`MIGRATION_LOCK_CLASS`], `$2` the schema.
const MIGRATION_LOCK: &str = include_str!("sql/queries/migration_lock.sql");
const SCHEMA_EXISTS: &str = include_str!("sql/queries/schema_exists.sql");

impl PgsqlTransport {
    /// Create the schema, or check its version. The common case (it exists, current version)
    /// is two queries; otherwise the work is done under an advisory lock, in one transaction.
    pub(super) async fn migrate(&self) -> Result<(), Fail> {
        // The check is bounded like any operation; the migration itself is not (it may
        // rebuild an index of a large table, under the lock other processes wait for).
        let check = async {
            let client = self.pool.get().await?;
            // Looked up first, so that a fresh database does not log an error.
            let table = format!("\"{}\".schema_version", self.schema);
            let exists: bool = client
                .query_one(TABLE_EXISTS, &[&table])
                .await?
                .try_get(0)?;
            let current = exists && {
                let version: Option<i32> =
                    client.query_one(&self.sql.version, &[]).await?.try_get(0)?;
                version == Some(SCHEMA_VERSION)
            };
            Ok::<_, Fail>((client, current))
        };
        let checked = tokio::time::timeout(OPERATION_TIMEOUT, check).await;
        let (mut client, current) = match checked {
            Ok(checked) => checked?,
            Err(_) => return Err(Fail::Transport(self.no_reply(OPERATION_TIMEOUT))),
        };
        if current {
            return Ok(());
        }
        let tx = client.transaction().await?;
        tx.execute(MIGRATION_LOCK, &[&MIGRATION_LOCK_CLASS, &self.schema])
            .await?;
        // Checked rather than `CREATE SCHEMA IF NOT EXISTS`, which needs the CREATE privilege
        // on the database even when the schema exists (an operator may have created it).
        let exists: bool = tx
            .query_one(SCHEMA_EXISTS, &[&self.schema])
            .await?
            .try_get(0)?;
        if !exists {
            tx.batch_execute(&self.sql.create_schema).await?;
        }
        tx.batch_execute(&self.sql.version_table).await?;
        // Read again under the lock: another process may have created it meanwhile.
        let version: Option<i32> = tx.query_one(&self.sql.version, &[]).await?.try_get(0)?;
        let from = version.unwrap_or(0);
        if from > SCHEMA_VERSION {
            return Err(Fail::Transport(TransportError::Backend {
                transport: TRANSPORT.to_string(),
                message: format!(
                    "schema \"{}\" has version {from}; this rex supports version {SCHEMA_VERSION} (is it newer?)",
                    self.schema
                ),
            }));
        }
        if from < SCHEMA_VERSION {
            for migration in &self.sql.migrations[from.max(0) as usize..] {
                tx.batch_execute(migration).await?;
            }
            tx.execute(&self.sql.set_version, &[&SCHEMA_VERSION])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
