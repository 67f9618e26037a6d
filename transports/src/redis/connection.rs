//! Connections: the per-runtime cache, the shared connection and the `BLPOP` ones, and the
//! mapping of `redis` crate errors to [`TransportError`] (retryable or not, secrets scrubbed).
//!
//! The connections of a Tokio runtime are driven by that runtime's tasks, so each runtime
//! that uses the transport gets connections of its own, kept in the cache the AMQP transport
//! uses too (`PerRuntime` of `crate::runtime_cache`); Redis connections never count as stale
//! there, so beyond [`MAX_RUNTIMES`] the oldest runtime's are dropped.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, ErrorKind, RedisError, ServerErrorKind};
use tokio::sync::OnceCell;

use super::RedisTransport;
use crate::runtime_cache::CacheSlot;
use crate::uri::scrub;
use crate::{Result, TransportError};

/// Connecting (TCP and handshake) gives up after this long.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A command on the shared connection gives up after this long, and the connection is then
/// replaced (a half-open TCP connection never fails by itself). Scripts are short; an
/// operator's `retry_failed` over a huge queue is the longest.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection attempts per (re)connection, with exponential backoff from 100 ms: an operation
/// during an outage fails within about a second, and the caller's backoff takes over.
const CONNECT_RETRIES: usize = 3;
/// Runtimes whose connections are kept; the oldest are dropped beyond this.
pub(super) const MAX_RUNTIMES: usize = 8;

/// The connections of one Tokio runtime.
#[derive(Default)]
pub(super) struct RuntimeConnections {
    /// Connected on first use; left empty while connecting fails, so the next use tries again.
    shared: Arc<OnceCell<ConnectionManager>>,
    /// Idle connections for `BLPOP`.
    pub(super) blocking: Vec<MultiplexedConnection>,
}

/// Never stale: a dead connection manager reconnects by itself, and is replaced after a
/// timeout (see [`RedisTransport::command_error`]).
impl CacheSlot for RuntimeConnections {}

impl RedisTransport {
    /// The connections of the current runtime, made if needed.
    pub(super) fn with_runtime<T>(
        &self,
        f: impl FnOnce(&mut RuntimeConnections) -> T,
    ) -> Result<T> {
        self.runtimes
            .with_current(|_| RuntimeConnections::default(), f)
            // An evicted runtime's connections are closed by dropping them (here, outside the
            // cache's lock).
            .map(|(value, _evicted)| value)
            .ok_or_else(|| {
                TransportError::Unsupported(format!(
                    "{}: used outside a Tokio runtime",
                    self.display
                ))
            })
    }

    /// The shared connection of the current runtime.
    pub(super) async fn connection(&self) -> Result<ConnectionManager> {
        let cell = self.with_runtime(|r| Arc::clone(&r.shared))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(CONNECT_RETRIES)
            .set_max_delay(Duration::from_secs(1));
        cell.get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(|e| self.error(e))
    }

    /// A new connection for `BLPOP` (never the shared one: `BLPOP` blocks its connection).
    pub(super) async fn blocking_connection(&self) -> Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // BLPOP replies when it times out itself; `blpop` has its own guard.
            .set_response_timeout(None);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))?;
        // Lets operators see in CLIENT LIST whose waiters these are.
        ::redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(format!("{}:wait", self.prefix))
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(connection)
    }

    /// [`error`](Self::error) for a command on the shared connection. The connection manager
    /// reconnects by itself when the connection drops, but not after a timeout: then this
    /// runtime's next operation makes a new one.
    pub(super) fn command_error(&self, e: RedisError) -> TransportError {
        if e.is_timeout() {
            // Outside a runtime there is nothing to replace.
            let _ = self.with_runtime(|r| r.shared = Arc::new(OnceCell::new()));
        }
        self.error(e)
    }

    /// Connection trouble is retryable ([`TransportError::Unavailable`]); the rest is not.
    pub(super) fn error(&self, e: RedisError) -> TransportError {
        let retryable = e.is_io_error()
            || e.is_connection_dropped()
            || is_tls_failure(&e)
            || e.is_timeout()
            || e.code() == Some("BUSY")
            || matches!(
                e.kind(),
                ErrorKind::AuthenticationFailed
                    | ErrorKind::Server(
                        ServerErrorKind::BusyLoading
                            | ServerErrorKind::TryAgain
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ClusterDown
                            | ServerErrorKind::ReadOnly
                    )
            );
        let (transport, message) = (self.display.clone(), scrub(&e.to_string(), &self.secrets));
        if retryable {
            TransportError::Unavailable { transport, message }
        } else {
            TransportError::Backend { transport, message }
        }
    }
}

/// A failed TLS handshake (an unknown CA, a refused client certificate): a connection
/// failure like any other, as on the other transports — the server or its certificate may be
/// fixed while the workers wait. redis-rs keeps the native-tls error behind an `Arc`.
fn is_tls_failure(e: &RedisError) -> bool {
    std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>())
        .is_some_and(|inner| inner.is::<native_tls::Error>())
}
