//! Connections: the pool each transport holds, getting a connection to a migrated schema, and
//! turning what the client library (and the pool) fail with into the contract's
//! [`TransportError`] — connection trouble is retryable, so that the same transport works again
//! once the server is back.

use std::error::Error as _;
use std::time::Duration;

use super::tls::LazyTls;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};

use super::{PgsqlTransport, TRANSPORT};
use crate::{Result, TransportError};

/// Connections per transport (one process), besides the listening one.
const POOL_SIZE: usize = 4;
/// An operation (getting a connection, its statements) with no answer within this long is
/// abandoned as [`TransportError::Unavailable`], and the idle connections are dropped with
/// the one it used: a connection whose packets are silently dropped never fails by itself
/// (TCP keepalives and `tcp_user_timeout`, in `uri.rs`, catch a dead peer, not a middlebox
/// that swallows what it acknowledged), and a request whose reply was lost leaves its
/// connection out of step for good.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// [`OPERATION_TIMEOUT`] for what reads or changes a whole table (operators' listings, stats,
/// retries and purges): a statement abandoned at the client may
/// still complete at the server, so these get room to finish.
pub(super) const BULK_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// [`OPERATION_TIMEOUT`] for the upkeep (`VACUUM` of a large table takes a while).
pub(super) const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What an operation can fail with before it is turned into a [`TransportError`].
pub(super) enum Fail {
    Sql(tokio_postgres::Error),
    Pool(PoolError),
    /// A row that does not decode (corrupt JSON, a negative count...).
    Data(String),
    Transport(TransportError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<PoolError> for Fail {
    fn from(e: PoolError) -> Self {
        Fail::Pool(e)
    }
}

impl From<TransportError> for Fail {
    fn from(e: TransportError) -> Self {
        Fail::Transport(e)
    }
}

/// The pool of connections to `config`; `uri` (as given) is for the error.
pub(super) fn pool(config: tokio_postgres::Config, tls: LazyTls, uri: &str) -> Result<Pool> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()
        .map_err(|e| TransportError::InvalidUri {
            uri: crate::redact_uri(uri),
            reason: e.to_string(),
        })
}

impl PgsqlTransport {
    /// A pooled connection to a migrated schema.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Client, Fail> {
        self.migrated.get_or_try_init(|| self.migrate()).await?;
        Ok(self.pool.get().await?)
    }

    /// Turn a failure into the contract's error: connection trouble is retryable.
    pub(super) fn error(&self, fail: Fail) -> TransportError {
        to_error(&self.uri, fail)
    }

    /// Run `op` within [`OPERATION_TIMEOUT`]; its failure as the contract's error.
    pub(super) async fn run<T>(&self, op: impl Future<Output = Result<T, Fail>>) -> Result<T> {
        self.run_within(OPERATION_TIMEOUT, op).await
    }

    /// [`run`](Self::run) with another bound. The schema is checked (or migrated) first,
    /// outside the bound: a migration may rebuild an index of a large table (its quick check
    /// is bounded in `migrate`).
    pub(super) async fn run_within<T>(
        &self,
        limit: Duration,
        op: impl Future<Output = Result<T, Fail>>,
    ) -> Result<T> {
        if let Err(fail) = self.migrated.get_or_try_init(|| self.migrate()).await {
            return Err(self.error(fail));
        }
        // A `let`, so that the abandoned operation (and the connection it holds) is dropped,
        // back into the pool, before the pool is emptied.
        let outcome = tokio::time::timeout(limit, op).await;
        match outcome {
            Ok(result) => result.map_err(|fail| self.error(fail)),
            Err(_) => Err(self.error(Fail::Transport(self.no_reply(limit)))),
        }
    }

    /// An operation had no reply within `limit`: drop every idle connection (the one it used
    /// is among them, and the others may be as dead), so that the next one connects afresh.
    pub(super) fn no_reply(&self, limit: Duration) -> TransportError {
        let dropped = self.pool.retain(|_, _| false).removed.len();
        TransportError::Unavailable {
            transport: TRANSPORT.to_string(),
            message: format!(
                "{}: no reply within {} s; {dropped} connection(s) dropped",
                self.uri,
                limit.as_secs()
            ),
        }
    }
}

/// [`PgsqlTransport::error`] for the transport described by `uri`, where the transport itself
/// is not at hand (a task of its own).
pub(super) fn to_error(uri: &str, fail: Fail) -> TransportError {
    let unavailable = |message: String| TransportError::Unavailable {
        transport: TRANSPORT.to_string(),
        message: format!("{uri}: {message}"),
    };
    let backend = |message: String| TransportError::Backend {
        transport: TRANSPORT.to_string(),
        message,
    };
    match fail {
        Fail::Sql(e) if is_retryable(&e) => unavailable(error_message(&e)),
        Fail::Sql(e) => backend(error_message(&e)),
        // Getting a connection only fails when opening a new one fails.
        Fail::Pool(PoolError::Backend(e)) => unavailable(error_message(&e)),
        Fail::Pool(e) => unavailable(e.to_string()),
        Fail::Data(message) => backend(message),
        Fail::Transport(e) => e,
    }
}

/// Whether `e` means the connection (or the server) is in trouble rather than the statement.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        // connection exception, insufficient resources, operator intervention (shutdown,
        // cancel), serialization failure / deadlock, read-only standby.
        Some(code) => {
            let code = code.code();
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "25006"
        }
        None => {
            e.is_closed()
                || e.source().is_some_and(|s| s.is::<std::io::Error>())
                || matches!(
                    e.to_string().as_str(),
                    "error connecting to server"
                        | "error communicating with the server"
                        | "timeout waiting for server"
                )
        }
    }
}

/// `tokio_postgres::Error` shows only its kind; add the server's message or the cause.
fn error_message(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), e.source()) {
        (Some(db), _) => db.to_string(),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}
