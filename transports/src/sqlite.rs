//! The embedded default transport (`sqlite:PATH`): one SQLite file shared by every worker
//! process of a project.
//!
//! Concurrency: WAL mode lets readers proceed while one writer commits, and the busy timeout
//! makes writers queue up instead of failing. Every write is either one statement (claim, fail,
//! release, renew: atomic on their own) or a `BEGIN IMMEDIATE` transaction, which takes the
//! write lock up front — a deferred transaction that read first could fail with
//! `SQLITE_BUSY_SNAPSHOT` when upgrading, which the busy timeout does not cover. Settlements
//! are fenced by `lease_token` in their `WHERE` clause, so a stale lease matches no row.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::task::{
    add_ms, from_epoch_ms, now_ms, schedule_key_prefix, schedule_key_time, to_epoch_ms,
};
use crate::wake::WakeBus;
use crate::{
    Failure, FailureKind, Lease, Payload, PurgeWhich, QueueCounts, QueueStats, Result, Selector,
    Submit, SubmitOptions, Task, TaskId, TaskState, TaskSummary, Transport, TransportError,
    validate_queue_name,
};

const TRANSPORT: &str = "SQLite";
/// Bumped (with a migration in [`migrate`]) whenever the schema changes.
const SCHEMA_VERSION: i64 = 1;
/// Many worker processes write to one file; a writer waits this long for the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Transport::wait`] looks for work submitted by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Times are milliseconds since the Unix epoch. `history` is a JSON array of
/// [`Attempt`](crate::Attempt)s, appended to in SQL so that settlements stay single statements.
const SCHEMA: &str = "
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    run_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    lease_token INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until INTEGER,
    last_error TEXT,
    history TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX tasks_by_queue ON tasks (queue, state, id);
CREATE INDEX tasks_by_lease ON tasks (state, lease_until);
CREATE INDEX tasks_by_owner ON tasks (owner);
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    task_id INTEGER,
    created_at INTEGER
);
";

/// Schedule keys (`schedule:<id>:<16-digit ms>`) older than `?1`, but the latest of each
/// schedule: numbered per schedule from the newest, by a window function (one sort, not a
/// lookup per key).
const PRUNE_SCHEDULE_KEYS: &str = "
DELETE FROM idempotency_keys WHERE key IN (
    SELECT key FROM (
        SELECT key, row_number() OVER (
            PARTITION BY substr(key, 1, length(key) - 16) ORDER BY key DESC
        ) AS newest
        FROM idempotency_keys WHERE key > 'schedule:' AND key < 'schedule;'
    ) WHERE newest > 1 AND CAST(substr(key, -16) AS INTEGER) < ?1
)";

/// Columns read by [`task_from_row`].
macro_rules! task_columns {
    () => {
        "id, queue, payload, attempts, errors, crashes, lease_token, owner, lease_until, created_at"
    };
}

/// Columns read by [`summary_from_row`].
macro_rules! summary_columns {
    () => {
        "id, queue, state, payload, attempts, errors, crashes, last_error, history, created_at"
    };
}

/// Shared by `counts` and `stats`; `?1` is now.
macro_rules! count_columns {
    () => {
        "COALESCE(SUM(state = 'pending' AND run_at <= ?1), 0),
         COALESCE(SUM(state = 'pending' AND run_at > ?1), 0),
         COALESCE(SUM(state = 'running'), 0),
         COALESCE(SUM(state = 'failed'), 0)"
    };
}

/// A transport backed by one SQLite database file.
pub struct SqliteTransport {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Wakes `wait` at once for changes made through this instance.
    notify: Notify,
    /// Wakes the waiters of other processes on this host after a commit.
    wake: WakeBus,
}

impl SqliteTransport {
    /// Open `sqlite:PATH` (relative to the current directory) or `sqlite:///ABSOLUTE/PATH`.
    pub fn open_uri(uri: &str) -> Result<Self> {
        let invalid = |reason: &str| TransportError::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let rest = uri
            .strip_prefix("sqlite:")
            .ok_or_else(|| invalid("expected sqlite:PATH"))?;
        let path = match rest.strip_prefix("//") {
            Some(absolute) if absolute.starts_with('/') => absolute,
            Some(_) => return Err(invalid("expected sqlite:PATH or sqlite:///ABSOLUTE/PATH")),
            None => rest,
        };
        if path.is_empty() {
            return Err(invalid("the path is empty"));
        }
        Self::open(path)
    }

    /// Open (creating if needed, with its parent directory) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let unavailable = |message: String| TransportError::Unavailable {
            transport: TRANSPORT.to_string(),
            message: format!("{}: {message}", path.display()),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut conn = Connection::open(&path).map_err(|e| unavailable(e.to_string()))?;
        configure(&conn).map_err(sql_error)?;
        migrate(&mut conn)?;
        Ok(SqliteTransport {
            wake: WakeBus::new(&path),
            path,
            conn: Mutex::new(conn),
            notify: Notify::new(),
        })
    }

    /// Run `f` on the connection. Operations are short, so they run synchronously on the
    /// caller's thread; the mutex serialises the tasks of this process sharing one connection.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave a transaction open (it rolls back on
        // drop), so a poisoned connection is still consistent.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn).map_err(sql_error)
    }

    /// Tasks may have become ready: wake this process's waiters and, through the wake bus,
    /// those of other processes on this database.
    fn wake_up(&self) {
        self.notify.notify_waiters();
        self.wake.ring();
    }

    /// Whether a task of `queue` is ready now, else when the next delayed one will be.
    fn readiness(&self, queue: &str) -> Result<(bool, Option<i64>)> {
        let now = now_ms();
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE queue = CAST(?1 AS TEXT) AND state = 'pending' AND run_at <= ?2),
                        (SELECT MIN(run_at) FROM tasks WHERE queue = CAST(?1 AS TEXT) AND state = 'pending' AND run_at > ?2)",
            )?
            .query_row(params![queue, now], |row| Ok((row.get(0)?, row.get(1)?)))
        })
    }
}

/// Run `f` in a `BEGIN IMMEDIATE` transaction whose BEGIN and COMMIT are cached statements
/// (rusqlite's `Transaction` re-parses them on every use: measurable on the per-task path).
fn immediate<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    match f(conn) {
        Ok(value) => {
            if let Err(e) = conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]))
            {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Lease the oldest ready task of `queue`: one statement, so the choice of task and its lease
/// are atomic across processes.
///
/// `CAST(? AS TEXT)`: the bundled SQLite has STAT4, which re-prepares a statement after every
/// new binding of a parameter compared with an indexed column (measured: every claim, a fifth
/// of the worker's time). Comparing with an expression keeps the index and the prepared plan.
fn claim_next(
    conn: &Connection,
    queue: &str,
    owner: &str,
    lease_until: i64,
    now: i64,
) -> rusqlite::Result<Option<Task>> {
    conn.prepare_cached(concat!(
        "UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
            owner = ?1, lease_until = ?2
         WHERE id = (SELECT id FROM tasks WHERE queue = CAST(?3 AS TEXT) AND state = 'pending' AND run_at <= ?4
                     ORDER BY id LIMIT 1)
         RETURNING ",
        task_columns!()
    ))?
    .query_row(params![owner, lease_until, queue, now], task_from_row)
    .optional()
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Room for every statement this module prepares (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(32);
    // WAL is a property of the file: the first opener switches it, later ones find it set.
    // Switching needs an exclusive lock and SQLite does not call the busy handler for it, so
    // processes opening a fresh file together retry here themselves.
    let give_up = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Err(e) if is_busy(&e) && std::time::Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(fastrand::u64(1..20)))
            }
            result => break result.map(drop)?,
        }
    }
    // With WAL, NORMAL only syncs at checkpoints: a power loss may lose the last commits but
    // never corrupts the file — the usual trade-off for a queue's throughput.
    conn.pragma_update(None, "synchronous", "NORMAL")
}

/// Create the schema on first open. Under `BEGIN IMMEDIATE` so that two processes opening a
/// fresh file at once do not both create it.
fn migrate(conn: &mut Connection) -> Result<()> {
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
        0 => {
            tx.execute_batch(SCHEMA).map_err(sql_error)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sql_error)?;
        }
        SCHEMA_VERSION => {}
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

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Busy/locked after the busy timeout is retryable; anything else is a backend failure.
fn sql_error(e: rusqlite::Error) -> TransportError {
    let (transport, message) = (TRANSPORT.to_string(), e.to_string());
    if is_busy(&e) {
        TransportError::Unavailable { transport, message }
    } else {
        TransportError::Backend { transport, message }
    }
}

fn encode(payload: &Payload) -> rusqlite::Result<String> {
    serde_json::to_string(payload).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Parse the JSON text in column `idx`.
fn decode<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// SQLite integers are `i64`; counts and lease tokens are never negative.
fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, Box::new(e)))
}

/// A lease token as stored. Tokens count claims from 0, so one beyond `i64::MAX` was never
/// issued: -1 matches no row, which makes the settlement stale, as it should be.
fn token(lease: &Lease) -> i64 {
    i64::try_from(lease.token).unwrap_or(-1)
}

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: row.get(0)?,
        queue: row.get(1)?,
        payload: decode(row, 2)?,
        attempt: row.get(3)?,
        errors: row.get(4)?,
        crashes: row.get(5)?,
        lease_token: get_u64(row, 6)?,
        owner: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
        lease_until: from_epoch_ms(row.get::<_, Option<i64>>(8)?.unwrap_or(0)),
        created_at: from_epoch_ms(row.get(9)?),
        lost: false,
    })
}

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<TaskSummary> {
    let state: String = row.get(2)?;
    Ok(TaskSummary {
        id: row.get(0)?,
        queue: row.get(1)?,
        state: TaskState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                Type::Text,
                format!("unknown task state {state:?}").into(),
            )
        })?,
        payload: decode(row, 3)?,
        attempts: row.get(4)?,
        errors: row.get(5)?,
        crashes: row.get(6)?,
        last_error: row.get(7)?,
        history: decode(row, 8)?,
        created_at: from_epoch_ms(row.get(9)?),
    })
}

fn insert_task(
    conn: &Connection,
    queue: &str,
    payload: &Payload,
    run_at: i64,
    now: i64,
) -> rusqlite::Result<TaskId> {
    conn.prepare_cached(
        "INSERT INTO tasks (queue, payload, state, run_at, created_at) VALUES (?1, ?2, 'pending', ?3, ?4)",
    )?
    .execute(params![queue, encode(payload)?, run_at, now])?;
    Ok(conn.last_insert_rowid())
}

#[async_trait::async_trait]
impl Transport for SqliteTransport {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        let run_at = opts.run_at.map_or(now, to_epoch_ms);
        let id = self.with(|conn| {
            let Some(key) = &opts.idempotency_key else {
                return insert_task(conn, queue, &payload, run_at, now).map(Some);
            };
            // Key and task commit together: neither a key without its task nor a duplicate.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = insert_task(&tx, queue, &payload, run_at, now)?;
            let fresh = tx
                .prepare_cached(
                    "INSERT INTO idempotency_keys (key, task_id, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO NOTHING",
                )?
                .execute(params![key, id, now])?
                == 1;
            if !fresh {
                return Ok(None); // dropping `tx` rolls the task back
            }
            tx.commit()?;
            Ok(Some(id))
        })?;
        if id.is_some() {
            self.wake_up();
        }
        Ok(id)
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        let now = now_ms();
        self.with(|conn| claim_next(conn, queue, owner, add_ms(now, lease), now))
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        let now = now_ms();
        let done = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM tasks WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
                )?
                .execute(params![lease.id, token(lease)])?;
            if deleted == 0 {
                return Ok(false);
            }
            for submit in submits {
                insert_task(&tx, &submit.queue, &submit.payload, now, now)?;
            }
            tx.commit()?;
            Ok(true)
        })?;
        if done && !submits.is_empty() {
            self.wake_up();
        }
        Ok(done)
    }

    /// One IMMEDIATE transaction: delete the finished task (if its lease is current), insert
    /// its follow-ups, lease the next task.
    async fn complete_and_claim(
        &self,
        lease: &Lease,
        submits: &[Submit],
        queue: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<(bool, Option<Task>)> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        validate_queue_name(queue)?;
        let now = now_ms();
        let (done, next) = self.with(|conn| {
            immediate(conn, |tx| {
                let deleted = tx
                .prepare_cached(
                    "DELETE FROM tasks WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
                )?
                .execute(params![lease.id, token(lease)])?;
                if deleted > 0 {
                    for submit in submits {
                        insert_task(tx, &submit.queue, &submit.payload, now, now)?;
                    }
                }
                let next = claim_next(tx, queue, owner, add_ms(now, lease_for), now)?;
                Ok((deleted > 0, next))
            })
        })?;
        if done && !submits.is_empty() {
            self.wake_up();
        }
        Ok((done, next))
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let now = now_ms();
        let (outcome, errors, crashes) = match failure.kind {
            FailureKind::Error => ("error", 1, 0),
            FailureKind::Crash => ("crash", 0, 1),
        };
        let (state, run_at) = match retry_at {
            Some(t) => (TaskState::Pending, Some(to_epoch_ms(t))),
            None => (TaskState::Failed, None),
        };
        // `attempts` and `owner` on the right-hand side are the values before this update.
        let changed = self.with(|conn| {
            conn.prepare_cached(
                "UPDATE tasks SET state = ?1, run_at = COALESCE(?2, run_at), errors = errors + ?3,
                    crashes = crashes + ?4, last_error = ?5, owner = NULL, lease_until = NULL,
                    history = json_insert(history, '$[#]', json_object('attempt', attempts,
                        'owner', owner, 'outcome', ?6, 'reason', ?5, 'finished_at', ?7))
                 WHERE id = ?8 AND lease_token = ?9 AND state = 'running'",
            )?
            .execute(params![
                state.as_str(),
                run_at,
                errors,
                crashes,
                failure.reason,
                outcome,
                now,
                lease.id,
                token(lease)
            ])
        })? == 1;
        if changed && retry_at.is_some() {
            self.wake_up();
        }
        Ok(changed)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let now = now_ms();
        let changed = self.with(|conn| {
            conn.prepare_cached(
                "UPDATE tasks SET state = 'pending', run_at = ?1, attempts = attempts - 1,
                    owner = NULL, lease_until = NULL,
                    history = json_insert(history, '$[#]', json_object('attempt', attempts,
                        'owner', owner, 'outcome', 'released', 'reason', ?2, 'finished_at', ?1))
                 WHERE id = ?3 AND lease_token = ?4 AND state = 'running'",
            )?
            .execute(params![now, reason, lease.id, token(lease)])
        })? == 1;
        if changed {
            self.wake_up();
        }
        Ok(changed)
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        self.with(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE owner = ?1 AND state = 'running' ORDER BY id"
            ))?
            .query_map(params![owner], task_from_row)?
            .collect()
        })
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        self.with(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE state = 'running' AND lease_until < ?1 ORDER BY id"
            ))?
            .query_map(params![to_epoch_ms(now)], task_from_row)?
            .collect()
        })
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        let until = add_ms(now_ms(), lease);
        // The owners travel as one JSON array so that any number of them is one cached statement.
        let owners = serde_json::Value::from(owners).to_string();
        let renewed = self.with(|conn| {
            conn.prepare_cached(
                "UPDATE tasks SET lease_until = ?1
                 WHERE state = 'running' AND owner IN (SELECT value FROM json_each(?2))",
            )?
            .execute(params![until, owners])
        })?;
        Ok(renewed as u64)
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        let now = now_ms();
        self.with(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                count_columns!(),
                ", MIN(CASE WHEN state = 'pending' AND run_at > ?1 THEN run_at END)
                 FROM tasks WHERE queue = CAST(?2 AS TEXT)"
            ))?
            .query_row(params![now, queue], |row| {
                Ok(QueueCounts {
                    ready: get_u64(row, 0)?,
                    delayed: get_u64(row, 1)?,
                    running: get_u64(row, 2)?,
                    failed: get_u64(row, 3)?,
                    next_run_at: row.get::<_, Option<i64>>(4)?.map(from_epoch_ms),
                })
            })
        })
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = now_ms();
        self.with(|conn| {
            conn.prepare_cached(concat!(
                "SELECT queue, ",
                count_columns!(),
                ", MIN(CASE WHEN state = 'pending' THEN created_at END)
                 FROM tasks WHERE state != 'done' GROUP BY queue ORDER BY queue"
            ))?
            .query_map(params![now], |row| {
                let (ready, delayed) = (get_u64(row, 1)?, get_u64(row, 2)?);
                Ok(QueueStats {
                    queue: row.get(0)?,
                    pending: ready + delayed,
                    delayed,
                    running: get_u64(row, 3)?,
                    failed: get_u64(row, 4)?,
                    oldest_pending_ms: row
                        .get::<_, Option<i64>>(5)?
                        .map(|created| u64::try_from(now - created).unwrap_or(0)),
                })
            })?
            .collect()
        })
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        self.with(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                summary_columns!(),
                " FROM tasks WHERE state = 'failed' AND (?1 IS NULL OR queue = ?1) ORDER BY id"
            ))?
            .query_map(params![queue], summary_from_row)?
            .collect()
        })
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<u64> {
        const RETRY: &str =
            "UPDATE tasks SET state = 'pending', run_at = ?1, attempts = 0, errors = 0, crashes = 0
                             WHERE state = 'failed'";
        let now = now_ms();
        let moved = match selector {
            Selector::Ids(ids) => {
                let ids = serde_json::Value::from(ids.as_slice()).to_string();
                self.with(|conn| {
                    conn.prepare_cached(&format!(
                        "{RETRY} AND id IN (SELECT value FROM json_each(?2))"
                    ))?
                    .execute(params![now, ids])
                })?
            }
            Selector::Queue(queue) => {
                validate_queue_name(queue)?;
                self.with(|conn| {
                    conn.prepare_cached(&format!("{RETRY} AND queue = ?2"))?
                        .execute(params![now, queue])
                })?
            }
            Selector::All => self.with(|conn| conn.prepare_cached(RETRY)?.execute(params![now]))?,
        };
        if moved > 0 {
            self.wake_up();
        }
        Ok(moved as u64)
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        let state = match which {
            PurgeWhich::Failed => TaskState::Failed,
            PurgeWhich::Pending => TaskState::Pending,
        };
        let purged = self.with(|conn| {
            conn.prepare_cached("DELETE FROM tasks WHERE queue = ?1 AND state = ?2")?
                .execute(params![queue, state.as_str()])
        })?;
        Ok(purged as u64)
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let prefix = schedule_key_prefix(schedule);
        // Keys of one schedule are contiguous: `prefix` < key < `prefix` with ':' bumped to ';'.
        let upper = format!("{};", &prefix[..prefix.len() - 1]);
        let key: Option<String> = self.with(|conn| {
            conn.prepare_cached("SELECT key FROM idempotency_keys WHERE key > ?1 AND key < ?2 ORDER BY key DESC LIMIT 1")?
                .query_row(params![prefix, upper], |row| row.get(0))
                .optional()
        })?;
        Ok(key.as_deref().and_then(schedule_key_time))
    }

    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        let pruned = self.with(|conn| {
            conn.prepare_cached(PRUNE_SCHEDULE_KEYS)?
                .execute(params![to_epoch_ms(before)])
        })?;
        Ok(pruned as u64)
    }

    /// Returns as soon as a task is ready in `queue`: at once for changes made through this
    /// instance, within [`POLL_INTERVAL`] for changes made by other processes.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        let deadline = Instant::now() + timeout;
        // Other processes ring the wake bus after their commits; without it (it could not be
        // set up), poll.
        let bus = self
            .wake
            .listener()
            .and_then(|l| tokio::net::UnixDatagram::from_std(l).ok());
        let mut buf = [0u8; 16];
        loop {
            // Registered before the check, so a submit between the check and the sleep still
            // wakes us up.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (ready, next_run_at) = self.readiness(queue)?;
            if ready || Instant::now() >= deadline {
                return Ok(());
            }
            // A delayed task becomes ready by itself: no one will ring for it.
            let due = next_run_at.map(|at| {
                Instant::now() + Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
            });
            let rung = async {
                match &bus {
                    Some(socket) => socket.recv(&mut buf).await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            let recheck = if bus.is_some() {
                deadline
            } else {
                (Instant::now() + POLL_INTERVAL).min(deadline)
            };
            let recheck = due.map_or(recheck, |due| due.min(recheck));
            tokio::select! {
                _ = notified => return Ok(()),
                _ = rung => {}
                _ = tokio::time::sleep_until(recheck) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/rex.sqlite3");
        let uri = format!("sqlite://{}", nested.display());
        let t = SqliteTransport::open_uri(&uri).unwrap();
        assert_eq!(t.describe(), format!("sqlite:{}", nested.display()));
        assert!(nested.exists(), "parent directories are created");

        for bad in ["sqlite:", "sqlite://", "sqlite://host/x", "postgres://x"] {
            let err = SqliteTransport::open_uri(bad).err().expect(bad);
            assert!(
                matches!(err, TransportError::InvalidUri { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reopening_keeps_the_schema_and_the_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rex.sqlite3");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = SqliteTransport::open(&path).unwrap();
        rt.block_on(t.submit("foo", Payload::new(), &SubmitOptions::default()))
            .unwrap();
        drop(t);
        let t = SqliteTransport::open(&path).unwrap();
        assert_eq!(rt.block_on(t.counts("foo")).unwrap().ready, 1);
        let journal: String = t
            .with(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
            .unwrap();
        assert_eq!(journal, "wal");
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
