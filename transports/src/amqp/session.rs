//! One connection to the broker (a [`Session`]) and its channels: connecting, the shared
//! channels for claims, publishes and passive declares, channels of their own for what may
//! close one, and the mapping of lapin's errors to [`TransportError`]s (which are retryable,
//! which not).
//! Which session a runtime uses, and reconnecting, is in `runtimes.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lapin::options::ConfirmSelectOptions;
use lapin::protocol::AMQPErrorKind;
use lapin::{Channel, Connection, ConnectionProperties, DefaultConnectionBuilder, ErrorKind};
use tokio::runtime::Handle;

use super::wake::Waiter;
use super::{Inner, lock};
use crate::uri::scrub;
use crate::{Result, TransportError};

/// The connection of one Tokio runtime.
pub(super) struct Session {
    /// Tells this process's connections apart (their leases are dropped with them).
    pub(super) serial: u64,
    pub(super) connection: Connection,
    /// `basic.get` and acknowledgements (and nothing that may close it).
    pub(super) claim: Channel,
    /// Publishes, in confirm mode; replaced when the broker closes it.
    publish: Mutex<Channel>,
    /// Passive declares of objects that exist; replaced when closed.
    inspect: Mutex<Option<Channel>>,
    /// Wake-up consumers by queue.
    pub(super) waiters: Mutex<HashMap<String, Arc<Waiter>>>,
    /// Lifecycle events (`events.rs`): their publishes, without confirms, and the followers'
    /// count; replaced when closed. Held while one is opened, so that only one is.
    pub(super) events: tokio::sync::Mutex<Option<Channel>>,
}

impl Session {
    pub(super) fn alive(&self) -> bool {
        self.connection.status().connected() && self.claim.status().connected()
    }
}

pub(super) fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(error) if error.get_id() == 404)
}

impl Inner {
    pub(super) fn handle(&self) -> Result<Handle> {
        Handle::try_current().map_err(|_| self.outside_runtime())
    }

    pub(super) fn outside_runtime(&self) -> TransportError {
        TransportError::Unsupported(format!("{}: used outside a Tokio runtime", self.display))
    }

    pub(super) fn backend(&self, what: impl std::fmt::Display) -> TransportError {
        TransportError::Backend {
            transport: self.display.clone(),
            message: scrub(&what.to_string(), &self.secrets),
        }
    }

    pub(super) fn unavailable(&self, what: impl std::fmt::Display) -> TransportError {
        TransportError::Unavailable {
            transport: self.display.clone(),
            message: scrub(&what.to_string(), &self.secrets),
        }
    }

    /// Connection trouble is retryable ([`TransportError::Unavailable`]), and so is a
    /// `NOT_FOUND` (objects deleted behind our back: they are declared again on the next
    /// use); other refusals by the broker (`PRECONDITION_FAILED`, `ACCESS_REFUSED`…) are not.
    /// (Lookups that expect `NOT_FOUND` handle it before it gets here.)
    pub(super) fn error(&self, e: lapin::Error) -> TransportError {
        if is_not_found(&e) {
            self.forget_declared();
            return self.unavailable(format_args!(
                "{e} (deleted meanwhile? declared again on the next use)"
            ));
        }
        let retryable = match e.kind() {
            // Hard errors close the connection (`CONNECTION_FORCED` when the broker stops…).
            ErrorKind::ProtocolError(error) => matches!(error.kind(), AMQPErrorKind::Hard(_)),
            ErrorKind::IOError(_)
            | ErrorKind::RuntimeShutdownError(_)
            | ErrorKind::InvalidChannel(_)
            | ErrorKind::InvalidChannelState(..)
            | ErrorKind::InvalidConnectionState(_)
            | ErrorKind::MissingHeartbeatError
            | ErrorKind::ChannelsLimitReached => true,
            _ => false,
        };
        if retryable {
            self.unavailable(e)
        } else {
            self.backend(e)
        }
    }

    pub(super) async fn connect(&self) -> Result<Session> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("rex (prefix {})", self.prefix).into());
        let connecting = async {
            match &self.tls {
                None => Connection::connect_uri(self.uri.clone(), properties).await,
                Some(tls) => {
                    DefaultConnectionBuilder::new()?
                        .with_uri(self.uri.clone())
                        .with_properties(properties)
                        .with_tls_config(tls.clone())
                        .connect()
                        .await
                }
            }
        };
        let connection = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => {
                return Err(self.unavailable(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                )));
            }
            // Whatever goes wrong while connecting (refused, authentication, unknown
            // virtual host) may be fixed by the time the caller tries again.
            Ok(connection) => connection.map_err(|e| self.unavailable(e))?,
        };
        let channels = async {
            let claim = connection.create_channel().await?;
            let publish = connection.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>((claim, publish))
        };
        let (claim, publish) = channels.await.map_err(|e| self.error(e))?;
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        Ok(Session {
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            connection,
            claim,
            publish: Mutex::new(publish),
            inspect: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            events: tokio::sync::Mutex::new(None),
        })
    }

    pub(super) async fn publish_channel(&self, session: &Session) -> Result<Channel> {
        let current = lock(&session.publish).clone();
        if current.status().connected() {
            return Ok(current);
        }
        let fresh = async {
            let channel = session.connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await
        .map_err(|e| self.error(e))?;
        let mut slot = lock(&session.publish);
        if !slot.status().connected() {
            *slot = fresh;
        }
        Ok(slot.clone())
    }

    /// The channel for passive declares of objects that exist.
    pub(super) async fn inspect_channel(&self, session: &Session) -> Result<Channel> {
        let current = lock(&session.inspect).clone();
        if let Some(channel) = current.filter(|channel| channel.status().connected()) {
            return Ok(channel);
        }
        let channel = self.fresh_channel(session).await?;
        *lock(&session.inspect) = Some(channel.clone());
        Ok(channel)
    }

    pub(super) async fn fresh_channel(&self, session: &Session) -> Result<Channel> {
        session
            .connection
            .create_channel()
            .await
            .map_err(|e| self.error(e))
    }

    /// Close a channel of our own (best effort: it may be closed already).
    pub(super) async fn close(channel: &Channel) {
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
    }
}
