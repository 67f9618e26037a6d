//! The per-runtime session cache: each Tokio runtime that uses the transport gets a session
//! of its own (lapin's connections are driven by the runtime that made them), made on first
//! use, made again when it dies, with exponential backoff after a failed connection attempt.
//! Sessions the cache drops, and those of a dropped transport, are closed so that their claims
//! go back to the broker at once.
//!
//! The Redis transport keeps a cache of the same shape (`RuntimeConnections` in `redis.rs`);
//! the two share no code.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::runtime::{Handle, Id as RuntimeId};
use tokio::time::Instant;

use super::session::Session;
use super::{Inner, lock};
use crate::{Result, TransportError};

/// Waits between connection attempts after a failed one: from this, doubling…
const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// … up to this.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Runtimes whose connections are kept; the oldest are dropped beyond this.
const MAX_RUNTIMES: usize = 16;

/// The session of one Tokio runtime, and its reconnection state.
pub(super) struct RuntimeSlot {
    runtime: RuntimeId,
    /// The runtime driving the connection (it closes it when the transport is dropped).
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

impl Drop for Inner {
    /// A dropped transport closes its connections: its claims go back to the broker now.
    fn drop(&mut self) {
        let runtimes = self
            .runtimes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in runtimes.drain(..) {
            if let Some(session) = slot.session {
                Inner::close_session(&slot.handle, session, "rex: transport dropped");
            }
        }
    }
}

impl Inner {
    fn with_slot<T>(&self, f: impl FnOnce(&mut RuntimeSlot) -> T) -> Result<T> {
        let handle = self.handle()?;
        let runtime = handle.id();
        let mut runtimes = lock(&self.runtimes);
        let index = match runtimes.iter().position(|slot| slot.runtime == runtime) {
            Some(index) => index,
            None => {
                if runtimes.len() >= MAX_RUNTIMES {
                    // Runtimes that ended first (their connection is dead), then the oldest.
                    let dead = runtimes
                        .iter()
                        .position(|slot| slot.session.as_ref().is_none_or(|s| !s.alive()));
                    let evicted = runtimes.remove(dead.unwrap_or(0));
                    if let Some(session) = evicted.session {
                        Self::close_session(&evicted.handle, session, "rex: too many runtimes");
                    }
                }
                runtimes.push(RuntimeSlot {
                    runtime,
                    handle,
                    session: None,
                    connecting: Arc::new(tokio::sync::Mutex::new(())),
                    failures: 0,
                    retry_at: None,
                    last_error: String::new(),
                });
                runtimes.len() - 1
            }
        };
        Ok(f(&mut runtimes[index]))
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

    /// Drop a session that is no longer usable: its leases are stale (the broker returned
    /// their messages, or will once the connection is closed here).
    fn abandon(&self, session: Arc<Session>) {
        lock(&self.leases).retain(|_, held| held.channel.status().connected());
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
