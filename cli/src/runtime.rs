//! The async runtime a command runs on: one current-thread Tokio runtime per process (the
//! master's transport calls get a thread of their own, see `supervisor::ledger`).

use crate::error::{Error, Result};

/// A current-thread runtime for one command.
pub fn current_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the async runtime: {e}")))
}
