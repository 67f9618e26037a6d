//! PostgreSQL's lifecycle events: `NOTIFY` on a channel of the schema's own, `LISTEN`ed by one
//! dedicated connection per follower (not from the pool: it is held for as long as the
//! follower reads). Whether anyone follows is whether such a connection exists: each is named
//! by its `application_name`, which `pg_stat_activity` shows to every user (unlike the
//! sessions' queries).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use postgres_native_tls::TlsStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, Socket};

use super::connection::{Fail, OPERATION_TIMEOUT, to_error};
use super::tls::LazyTls;
use super::uri::MAX_SCHEMA_LEN;
use super::wake::{LISTEN, LISTEN_PING};
use super::{PgsqlTransport, TRANSPORT};
use crate::events::{EventFeed, FEED_BUFFER, decode, encode};
use crate::{Result, TaskEvent, TransportError};

/// The channel is this and the schema name. The dots keep it apart from every schema's
/// wake-up channel (`rex_<schema>`, whose schema names are letters, digits and underscores).
const PREFIX: &str = "rex.events.";
// The channel names the follower's session too: the server cuts both at 63 bytes.
const _: () = assert!(PREFIX.len() + MAX_SCHEMA_LEN <= 63);
/// A `NOTIFY` payload must be shorter than 8000 bytes.
const MAX_PAYLOAD: usize = 7_900;
/// `$1` the channel, `$2` the messages, notified in order.
const PUBLISH: &str = include_str!("sql/queries/publish_events.sql");
/// `$1` the followers' `application_name`: whether one of them is connected to this database.
const FOLLOWED: &str = include_str!("sql/queries/followed.sql");

type Connection = tokio_postgres::Connection<Socket, TlsStream<Socket>>;
type Feed = mpsc::Sender<Result<Vec<TaskEvent>>>;

/// The events' channel, and how a follower connects to it.
pub(super) struct Channel {
    /// The `NOTIFY` channel, also the `application_name` of the followers' connections.
    name: String,
    /// The pool's configuration, but for the `application_name`.
    config: tokio_postgres::Config,
    tls: LazyTls,
}

impl Channel {
    pub(super) fn new(mut config: tokio_postgres::Config, tls: LazyTls, schema: &str) -> Self {
        let name = format!("{PREFIX}{schema}");
        // Whatever the URI names the pool's connections, a follower's is found by this name.
        config.application_name(&name);
        Channel { name, config, tls }
    }
}

impl PgsqlTransport {
    /// One statement, whatever the number of messages. Their order holds: a transaction's
    /// notifications are delivered in the order they were sent (identical ones only once, but
    /// two messages are identical only if their events are).
    pub(super) async fn publish_now(&self, events: &[TaskEvent]) -> Result<()> {
        let messages = encode(events, MAX_PAYLOAD);
        if messages.is_empty() {
            return Ok(());
        }
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(PUBLISH).await?;
            client
                .execute(&stmt, &[&self.events.name, &messages])
                .await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn followed_now(&self) -> Result<bool> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(FOLLOWED).await?;
            let row = client.query_one(&stmt, &[&self.events.name]).await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    /// Connect, and return once `LISTEN` is in effect: from then on every publisher's
    /// `followed` says yes, and whatever is notified reaches the feed.
    pub(super) async fn follow_now(&self) -> Result<EventFeed> {
        let Channel { name, config, tls } = &self.events;
        // `connect_timeout` bounds the TCP connection only, not the start-up exchange.
        let connected = tokio::time::timeout(OPERATION_TIMEOUT, config.connect(tls.clone())).await;
        let (client, connection) = match connected {
            Ok(connected) => connected.map_err(|e| self.error(Fail::Sql(e)))?,
            Err(_) => return Err(no_reply(&self.uri, "connecting")),
        };
        let listen = LISTEN.replace("{channel}", &format!("\"{name}\""));
        let (feed, events) = mpsc::channel(FEED_BUFFER);
        let (started, listening) = oneshot::channel();
        let uri = self.uri.clone();
        tokio::spawn(follow(client, connection, listen, started, feed, uri));
        match listening.await {
            Ok(listened) => listened.map(|()| events),
            // The task ended without a word: its runtime is shutting down.
            Err(_) => Err(TransportError::Unavailable {
                transport: TRANSPORT.to_string(),
                message: format!("{}: the follower of events stopped", self.uri),
            }),
        }
    }
}

/// No reply within [`OPERATION_TIMEOUT`].
fn no_reply(uri: &str, to: &str) -> TransportError {
    TransportError::Unavailable {
        transport: TRANSPORT.to_string(),
        message: format!(
            "{uri}: no reply to {to} within {} s",
            OPERATION_TIMEOUT.as_secs()
        ),
    }
}

/// A ping in flight: whether it was answered in time.
type Ping<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Drive a follower's connection: send `listen` and report its outcome to `started`, then
/// forward the notifications to `feed` until the follower drops it (which closes the
/// connection) or the connection fails (one error, then the end).
async fn follow(
    client: Client,
    mut connection: Connection,
    listen: String,
    started: oneshot::Sender<Result<()>>,
    feed: Feed,
    uri: String,
) {
    // Sent through the connection, which only `poll_message` below drives.
    let request = tokio::time::timeout(OPERATION_TIMEOUT, client.batch_execute(&listen));
    tokio::pin!(request);
    let mut started = Some(started);
    // An idle connection whose packets are silently dropped never fails by itself: a ping
    // every LISTEN_PING, unanswered within OPERATION_TIMEOUT, gives it up (as `wake.rs` does).
    let mut ping_every = tokio::time::interval(LISTEN_PING);
    ping_every.tick().await;
    let mut ping: Option<Ping<'_>> = None;
    let failure = loop {
        let idle = ping.is_none();
        let pinging = poll_fn(|cx| match ping.as_mut() {
            Some(ping) => ping.as_mut().poll(cx),
            None => Poll::Pending,
        });
        tokio::select! {
            listened = &mut request, if started.is_some() => {
                let outcome = match listened {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(to_error(&uri, Fail::Sql(e))),
                    Err(_) => Err(no_reply(&uri, "LISTEN")),
                };
                let listening = outcome.is_ok();
                if let Some(started) = started.take() {
                    let _ = started.send(outcome);
                }
                if !listening {
                    return;
                }
            }
            () = feed.closed() => return,
            _ = ping_every.tick(), if started.is_none() && idle => {
                let client = &client;
                ping = Some(Box::pin(async move {
                    let pong = tokio::time::timeout(OPERATION_TIMEOUT, client.simple_query(""));
                    matches!(pong.await, Ok(Ok(_)))
                }));
            }
            answered = pinging => {
                if !answered {
                    break no_reply(&uri, "a ping");
                }
                ping = None;
            }
            message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    let batch = decode(note.payload().as_bytes());
                    // Not `send().await`: a follower that stops reading would stop this
                    // session from reading its notifications, and the server keeps every
                    // notification of the database (the job queue's wake-ups too) until all
                    // its listeners have read it, failing every NOTIFY once its queue is
                    // full. A follower that falls that far behind loses some instead.
                    if !batch.is_empty()
                        && let Err(TrySendError::Closed(_)) = feed.try_send(Ok(batch))
                    {
                        return;
                    }
                }
                Some(Ok(_)) => {} // a notice
                Some(Err(e)) => break to_error(&uri, Fail::Sql(e)),
                None => break TransportError::Unavailable {
                    transport: TRANSPORT.to_string(),
                    message: format!("{uri}: the server closed the connection"),
                },
            },
        }
    };
    // The session ends now, rather than after the follower has read the error.
    drop(connection);
    match started {
        Some(started) => {
            let _ = started.send(Err(failure));
        }
        None => {
            let _ = feed.send(Err(failure)).await;
        }
    }
}
