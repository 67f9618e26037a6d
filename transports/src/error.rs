//! The errors of the transport layer: one type for every backend, so that a caller can tell
//! a retryable outage (`Unavailable`) from everything else without knowing which backend it is.

use crate::task;

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The queue name breaks `^[a-z](?:[a-z0-9]|_(?!_))*[a-z0-9]$` or is too long.
    #[error(
        "\"{0}\" is not a properly-formatted queue name: 2 to {max} lowercase letters, digits and single underscores, starting with a letter and ending with a letter or digit",
        max = task::MAX_QUEUE_NAME
    )]
    InvalidQueueName(String),
    /// A schedule id that is empty, too long, or holds other characters than letters, digits,
    /// `_` and `-`.
    #[error(
        "\"{0}\" is not a schedule id: 1 to {max} letters, digits, '_' and '-'",
        max = crate::schedule::MAX_SCHEDULE_ID
    )]
    InvalidScheduleId(String),
    /// The payload is not a JSON object (an excerpt of what it was).
    #[error("Expected a mapping\nGot:\n    {0}")]
    InvalidPayload(String),
    /// The payload is larger than the limit (`asynctask_max_payload_size`).
    #[error(
        "A payload of {size} bytes exceeds the limit of {max} bytes (asynctask_max_payload_size)"
    )]
    PayloadTooLarge { size: usize, max: usize },
    /// The payload uses the one key the JSON layer reserves for itself.
    #[error(
        "Expected a payload without the key \"{}\" (reserved by the JSON parser)",
        task::RESERVED_KEY
    )]
    ReservedKey,
    /// The payload nests objects and arrays deeper than the limit.
    #[error("Expected a payload nested at most {max} levels deep")]
    PayloadTooDeep { max: usize },
    /// The URI names no known transport.
    #[error("\"{0}\" does not resolve to a known transport")]
    UnknownTransport(String),
    /// The URI is malformed for its scheme.
    #[error("invalid transport URI \"{uri}\": {reason}")]
    InvalidUri { uri: String, reason: String },
    /// The backend cannot be reached, refused the connection, or cannot store for now (a full
    /// disk, a lock held too long). Retryable.
    #[error("{transport} is unavailable:\n    {message}")]
    Unavailable { transport: String, message: String },
    /// Any other backend failure (SQL error, protocol error, corrupt row...).
    #[error("{transport}: {message}")]
    Backend { transport: String, message: String },
    /// The URI names a backend this build of rex was compiled without.
    #[error(
        "\"{uri}\" needs the {backend} transport, which this rex was built without (cargo feature \"{feature}\")"
    )]
    NotCompiled {
        uri: String,
        backend: &'static str,
        feature: &'static str,
    },
    /// The transport cannot do this (e.g. `memory:` across processes).
    #[error("{0}")]
    Unsupported(String),
}

impl TransportError {
    /// Whether retrying the same operation later may succeed (connection loss, busy DB).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TransportError::Unavailable { .. })
    }
}

pub type Result<T, E = TransportError> = std::result::Result<T, E>;
