//! The per-runtime session cache: each Tokio runtime that uses the transport gets a session
//! of its own (lapin's connections are driven by the runtime that made them), made on first
//! use, made again when it dies, with exponential backoff after a failed connection attempt.
//! Sessions the cache drops, and those of a dropped transport, are closed so that their claims
//! go back to the broker at once.
//!
//! The cache itself (which runtime's slot goes when there are too many) is
//! `crate::runtime_cache`, shared with the Redis transport; this file holds what a slot is
//! for RabbitMQ, reconnecting, and closing sessions.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::Inner;
use super::session::Session;
use crate::runtime_cache::CacheSlot;
use crate::{Result, TransportError};

/// Waits between connection attempts after a failed one: from this, doubling…
const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// … up to this.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Runtimes whose connections are kept; beyond this, a dead one's slot is dropped, else the
/// oldest's.
pub(super) const MAX_RUNTIMES: usize = 16;

/// The session of one Tokio runtime, and its reconnection state.
pub(super) struct RuntimeSlot {
    /// The runtime driving the connection (it closes it when the slot is evicted or the
    /// transport is dropped).
    handle: Handle,
    session: Option<Arc<Session>>,
    /// Held while connecting, so that one task of the runtime connects and the others wait.
    connecting: Arc<tokio::sync::Mutex<()>>,
    /// Failed connection attempts in a row, the time before which none is tried again, and
    /// the error of the last one.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl RuntimeSlot {
    fn new(handle: Handle) -> Self {
        RuntimeSlot {
            handle,
            session: None,
            connecting: Arc::new(tokio::sync::Mutex::new(())),
            failures: 0,
            retry_at: None,
            last_error: String::new(),
        }
    }

    /// Close the slot's session, if it has one, on the runtime driving it.
    fn close(self, reason: &'static str) {
        if let Some(session) = self.session {
            Inner::close_session(&self.handle, session, reason);
        }
    }
}

/// Runtimes that ended first (their connection is dead) are evicted before the oldest.
impl CacheSlot for RuntimeSlot {
    fn is_stale(&self) -> bool {
        self.session.as_ref().is_none_or(|s| !s.alive())
    }
}

impl Drop for Inner {
    /// A dropped transport closes its connections: its claims go back to the broker now.
    fn drop(&mut self) {
        for slot in self.runtimes.drain() {
            slot.close("rex: transport dropped");
        }
    }
}

impl Inner {
    /// `f` on the current runtime's slot, made if needed. A slot evicted to make room has its
    /// session closed (after the cache's lock is released): its claims go back to the broker.
    fn with_slot<T>(&self, f: impl FnOnce(&mut RuntimeSlot) -> T) -> Result<T> {
        let (value, evicted) = self
            .runtimes
            .with_current(RuntimeSlot::new, f)
            .ok_or_else(|| self.outside_runtime())?;
        if let Some(evicted) = evicted {
            evicted.close("rex: too many runtimes");
        }
        Ok(value)
    }

    /// The connection of the current runtime, made if needed.
    pub(super) async fn session(&self) -> Result<Arc<Session>> {
        let (current, gate) =
            self.with_slot(|slot| (slot.session.clone(), Arc::clone(&slot.connecting)))?;
        if let Some(session) = current.filter(|session| session.alive()) {
            return Ok(session);
        }
        let _connecting = gate.lock().await;
        let (current, retry_at, last_error) =
            self.with_slot(|slot| (slot.session.take(), slot.retry_at, slot.last_error.clone()))?;
        if let Some(session) = current {
            if session.alive() {
                self.with_slot(|slot| slot.session = Some(Arc::clone(&session)))?;
                return Ok(session);
            }
            self.abandon(session);
        }
        if let Some(retry_at) = retry_at {
            let left = retry_at.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(self.unavailable(format!(
                    "{last_error} (next connection attempt in {} ms)",
                    left.as_millis()
                )));
            }
        }
        match self.connect().await {
            Ok(session) => {
                let session = Arc::new(session);
                self.with_slot(|slot| {
                    slot.session = Some(Arc::clone(&session));
                    slot.failures = 0;
                    slot.retry_at = None;
                    slot.last_error.clear();
                })?;
                Ok(session)
            }
            Err(e) => {
                let message = match &e {
                    TransportError::Unavailable { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                self.with_slot(|slot| {
                    slot.failures = slot.failures.saturating_add(1);
                    let delay = RECONNECT_MIN
                        .saturating_mul(1 << slot.failures.saturating_sub(1).min(16))
                        .min(RECONNECT_MAX);
                    slot.retry_at = Some(Instant::now() + delay);
                    slot.last_error = message;
                })?;
                Err(e)
            }
        }
    }

    /// An operation on the current runtime's session had no answer within `limit`: the
    /// connection may have lost a request or its reply for good (its heartbeats may flow
    /// again after an outage, so it never fails by itself). Close it and let the next
    /// operation connect again; its leases are stale (the broker returns their messages when
    /// the connection closes, or when it misses its heartbeats).
    pub(super) fn no_reply(&self, limit: Duration) -> TransportError {
        if let Ok(Some(session)) = self.with_slot(|slot| slot.session.take()) {
            self.abandon(session);
        }
        self.unavailable(format!(
            "no reply from the broker within {} s; connection closed",
            limit.as_secs()
        ))
    }

    /// Drop a session that is no longer usable: its leases are stale (the broker returned
    /// their messages, or will once the connection is closed here).
    fn abandon(&self, session: Arc<Session>) {
        self.drop_leases(|held| {
            held.session != session.serial && held.channel.status().connected()
        });
        self.given_up_acked(session.serial);
        if let Ok(handle) = self.handle() {
            Self::close_session(&handle, session, "rex: connection replaced");
        }
    }

    /// Close a session's connection on the runtime driving it, if it is still open: dropping
    /// lapin's handles alone does not close it (its channels keep it open), and the claims
    /// made through it must go back to the broker now. A runtime that has shut down cancels
    /// the task: its connection is gone anyway.
    fn close_session(handle: &Handle, session: Arc<Session>, reason: &'static str) {
        if session.connection.status().connected() {
            handle.spawn(async move {
                let _ = session.connection.close(200, reason.into()).await;
            });
        }
    }
}
