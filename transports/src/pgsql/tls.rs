//! TLS for the connections of one transport, set up the first time a connection uses it.
//!
//! An OpenSSL context costs a process several MB (the system's root bundle alone is about
//! 2 MB), and most connections never need one: `sslmode=disable` never asks for TLS, and
//! `prefer` only uses it when the server agrees. tokio-postgres asks for a connector before it
//! knows, so the connector handed out here only builds the context when the server has said
//! yes, and every later connection of the transport shares it.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use postgres_native_tls::{TlsConnector, TlsStream};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use crate::tls::TlsSettings;

/// What the pool and the listening connections connect with (cheap to clone).
#[derive(Clone)]
pub(super) struct LazyTls(Arc<Shared>);

struct Shared {
    settings: TlsSettings,
    /// Built on first use; a failure is not kept (the next connection tries again).
    context: Mutex<Option<native_tls::TlsConnector>>,
}

impl LazyTls {
    pub(super) fn new(settings: TlsSettings) -> Self {
        LazyTls(Arc::new(Shared {
            settings,
            context: Mutex::new(None),
        }))
    }

    /// The shared context, built now if no connection has used TLS yet.
    fn context(&self) -> Result<native_tls::TlsConnector, String> {
        // A poisoned lock only means a panic while building: the slot is still usable.
        let mut slot = self.0.context.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(context) = slot.as_ref() {
            return Ok(context.clone());
        }
        let context = self.0.settings.connector()?;
        *slot = Some(context.clone());
        Ok(context)
    }

    /// Whether a connection has used TLS (and so built the context).
    #[cfg(test)]
    fn built(&self) -> bool {
        self.0.context.lock().is_ok_and(|slot| slot.is_some())
    }
}

impl MakeTlsConnect<Socket> for LazyTls {
    type Stream = TlsStream<Socket>;
    type TlsConnect = Connect;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, Self::Error> {
        Ok(Connect {
            tls: self.clone(),
            domain: domain.to_string(),
        })
    }
}

/// One connection's side: called only once the server has agreed to TLS.
pub(super) struct Connect {
    tls: LazyTls,
    domain: String,
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TlsStream<Socket>, Box<dyn Error + Send + Sync>>> + Send>>;

impl TlsConnect<Socket> for Connect {
    type Stream = TlsStream<Socket>;
    type Error = Box<dyn Error + Send + Sync>;
    type Future = Connecting;

    fn connect(self, stream: Socket) -> Connecting {
        match self.tls.context() {
            Ok(context) => {
                let handshake = TlsConnector::new(context, &self.domain).connect(stream);
                Box::pin(async move { handshake.await.map_err(Into::into) })
            }
            Err(reason) => Box::pin(async move { Err(format!("TLS set-up: {reason}").into()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Verify;

    #[test]
    fn nothing_is_built_until_a_connection_uses_tls() {
        let mut tls = LazyTls::new(TlsSettings {
            verify: Verify::Nothing,
            roots: None,
            identity: None,
        });
        let connect = tls.make_tls_connect("db.example").expect("infallible");
        assert!(!tls.built(), "asking for a connector builds nothing");
        drop(connect);
        tls.context().expect("a context");
        assert!(tls.built());
        assert!(tls.clone().built(), "clones share the context");
    }
}
