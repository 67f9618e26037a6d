//! The async runtime a command runs on: one current-thread Tokio runtime per process (the
//! master's transport calls get a thread of their own, see `supervisor::ledger`).

use crate::error::{Error, Result};

/// A runtime with one thread of its own driving connections, for a caller that blocks its
/// own thread for long (a child running a payload) on a transport whose connections must be
/// driven all the time (heartbeats; see `Transport::needs_constant_io`).
pub fn with_io_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the async runtime: {e}")))
}

/// A current-thread runtime for one command.
pub fn current_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the async runtime: {e}")))
}
