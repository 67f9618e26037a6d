//! The pgsql transport (being written).

use std::sync::Arc;

use crate::{Result, Transport, TransportError};

/// Open the transport named by `uri`.
pub fn open_uri(uri: &str) -> Result<Arc<dyn Transport>> {
    Err(TransportError::Unsupported(format!("the pgsql transport is not available yet ({})", crate::redact_uri(uri))))
}
