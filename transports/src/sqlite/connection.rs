//! The database file and its one connection: opening (and creating) the file, the connection
//! settings every process needs (WAL, busy timeout), the mutex that serialises this process's
//! use of the connection, `BEGIN IMMEDIATE` transactions, and rusqlite errors →
//! [`TransportError`] — where "busy" becomes retryable.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};
use tokio::sync::Notify;

use super::schema::migrate;
use super::wake::WakeBus;
use super::{SqliteTransport, TRANSPORT};
use crate::{Result, TransportError};

/// Many worker processes write to one file; a writer waits this long for the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const BEGIN_IMMEDIATE: &str = include_str!("sql/queries/begin_immediate.sql");
const COMMIT: &str = include_str!("sql/queries/commit.sql");
const ROLLBACK: &str = include_str!("sql/queries/rollback.sql");

impl SqliteTransport {
    /// Open (creating if needed, with its parent directory) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let unavailable = |message: String| TransportError::Unavailable {
            transport: TRANSPORT.to_string(),
            message: format!("{}: {message}", path.display()),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            private_dir(parent)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        private_file(&path)?;
        let mut conn = Connection::open(&path).map_err(|e| unavailable(e.to_string()))?;
        configure(&conn).map_err(sql_error)?;
        migrate(&mut conn)?;
        Ok(SqliteTransport {
            wake: WakeBus::new(&path),
            events: WakeBus::on(&path, "events"),
            path,
            conn: Mutex::new(conn),
            notify: Notify::new(),
        })
    }

    /// Run `f` on the connection. Operations are short, so they run synchronously on the
    /// caller's thread; the mutex serialises the tasks of this process sharing one connection.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        // A panic while holding the lock cannot leave a transaction open (it rolls back on
        // drop), so a poisoned connection is still consistent.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn).map_err(sql_error)
    }
}

/// Create `dir` (and its missing parents) readable by its owner only: the database in it
/// holds every payload. An existing directory is left as it is.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The database must be a regular file of its own (SQLite writes `-wal` and `-shm` files
/// beside it: `sqlite:/dev/null` would create `/dev/null-wal`). A new one is created 0600,
/// and SQLite gives its `-wal` and `-shm` files the same mode.
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |reason: String| {
        TransportError::Unsupported(format!(
            "cannot use {} as an SQLite database: {reason}",
            path.display()
        ))
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(refuse("it is not a regular file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                // Another process created it first: as good.
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(TransportError::Unavailable {
                    transport: TRANSPORT.to_string(),
                    message: format!("cannot create {}: {e}", path.display()),
                }),
            }
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// Run `f` in a `BEGIN IMMEDIATE` transaction whose BEGIN and COMMIT are cached statements
/// (rusqlite's `Transaction` re-parses them on every use: measurable on the per-task path).
pub(super) fn immediate<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(BEGIN_IMMEDIATE)?.execute([])?;
    match f(conn) {
        Ok(value) => {
            if let Err(e) = conn.prepare_cached(COMMIT).and_then(|mut s| s.execute([])) {
                let _ = conn.execute_batch(ROLLBACK);
                return Err(e);
            }
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch(ROLLBACK);
            Err(e)
        }
    }
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

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Conditions of the file and its disk rather than of a statement: retried later, as a
/// network transport's lost connection is (a full disk gets space back; a worker must never
/// charge such an error to the payload it was recording).
fn is_outage(e: &rusqlite::Error) -> bool {
    is_busy(e)
        || matches!(
            e.sqlite_error_code(),
            Some(
                ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::ReadOnly
                    | ErrorCode::FileLockingProtocolFailed
                    | ErrorCode::OutOfMemory
            )
        )
}

/// Busy, locked, full or failing disks are retryable; anything else is a backend failure.
pub(super) fn sql_error(e: rusqlite::Error) -> TransportError {
    let (transport, message) = (TRANSPORT.to_string(), e.to_string());
    if is_outage(&e) {
        TransportError::Unavailable { transport, message }
    } else {
        TransportError::Backend { transport, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Payload, SubmitOptions, Transport};

    /// The database at `path`, opened, with one task submitted to queue `foo`.
    fn open_with_one_task(path: &Path) -> (tokio::runtime::Runtime, SqliteTransport) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = SqliteTransport::open(path).unwrap();
        rt.block_on(Transport::submit(
            &t,
            "foo",
            Payload::new(),
            &SubmitOptions::default(),
        ))
        .unwrap();
        (rt, t)
    }

    #[test]
    fn reopening_keeps_the_schema_and_the_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rex.sqlite3");
        let (rt, t) = open_with_one_task(&path);
        drop(t);
        let t = SqliteTransport::open(&path).unwrap();
        assert_eq!(rt.block_on(Transport::counts(&t, "foo")).unwrap().ready, 1);
        let journal: String = t
            .with(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
            .unwrap();
        assert_eq!(journal, "wal");
    }

    #[test]
    fn the_database_its_wal_and_its_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("rex.sqlite3");
        // Kept open to the end: the WAL exists while a connection is.
        let (_rt, _open) = open_with_one_task(&path);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        // The WAL exists while a connection is open.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        assert_eq!(mode(Path::new(&wal)), 0o600);
    }

    #[test]
    fn a_path_that_is_not_a_regular_file_is_refused() {
        for path in ["/dev/null", "/tmp"] {
            let err = SqliteTransport::open(path).err().expect("refused");
            assert_eq!(
                err.to_string(),
                format!("cannot use {path} as an SQLite database: it is not a regular file")
            );
        }
    }

    #[test]
    fn a_full_disk_is_an_outage_not_a_failure_of_the_statement() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(sql_error(full).is_retryable());
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(!sql_error(constraint).is_retryable());
    }
}
