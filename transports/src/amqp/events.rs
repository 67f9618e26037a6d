//! Lifecycle events (see [`crate::events`]) on RabbitMQ:
//!
//! * publishers send each message (a JSON array of at most [`MAX_MESSAGE`] bytes) to the
//!   fanout exchange `P._events`, transient and without confirms (events are best effort), on
//!   a channel of the session kept for events;
//! * a follower binds an exclusive, auto-delete, server-named queue to that exchange and
//!   consumes it; it also consumes the shared queue `P._events.followers`, which nothing is
//!   published to (`x-max-length` 0): its consumer count, read from the reply to declaring it,
//!   is how publishers know whether anyone follows.
//!
//! The exchange is transient: a broker restart ends every follower (its connection goes), and
//! the next follower declares it again. The followers queue is durable (empty, it costs
//! nothing to keep): RabbitMQ 4 deprecates transient queues that are not exclusive. The presence declare is not passive (the queue
//! may not exist yet) and always has the same arguments, so declaring again changes nothing;
//! it runs on the events channel, so a refusal (another program's queue of that name, missing
//! permissions) closes no channel that tasks use.

use std::sync::{Arc, Weak};
use std::time::Duration;

use lapin::message::DeliveryResult;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};
use tokio::sync::mpsc;

use super::session::Session;
use super::topology::args;
use super::{AmqpTransport, Inner};
use crate::events::{EventFeed, FEED_BUFFER, decode, encode};
use crate::{Result, TaskEvent, TransportError};

/// The largest message published: far below the broker's limit, and small enough that a
/// follower holding [`FEED_BUFFER`] of them stays reasonable.
const MAX_MESSAGE: usize = 64 * 1024;

/// Publishing events that cannot be written within this long (a broker blocking publishers,
/// a stalled socket) gives up: the caller's own work must not wait on them.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a follower looks (locally) at its channel: a lost connection does not always
/// reach its consumers.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// Why a follower's subscription ended, as its consumers report it.
enum Ended {
    Failed(lapin::Error),
    /// The broker cancelled a consumer: its queue was deleted.
    Cancelled,
    /// The channel closed without a word to the consumers.
    Lost,
}

/// `x-max-length` 0: nothing is published to the followers queue, and nothing would stay.
fn followers_arguments() -> FieldTable {
    args(&[("x-max-length", AMQPValue::LongLongInt(0))])
}

impl AmqpTransport {
    pub(super) async fn publish_now(&self, events: &[TaskEvent]) -> Result<()> {
        let messages = encode(events, MAX_MESSAGE);
        if messages.is_empty() {
            return Ok(());
        }
        self.spawned(|inner| inner.publish_events(messages)).await
    }

    pub(super) async fn followed_now(&self) -> Result<bool> {
        self.spawned(Inner::followed).await
    }

    /// Subscribes on the current runtime's connection; the follower's task runs on this
    /// runtime too (the one driving that connection).
    pub(super) async fn follow_now(&self) -> Result<EventFeed> {
        self.spawned(Inner::follow).await
    }
}

impl Inner {
    async fn declare_events_exchange(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                self.events_name().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// Declares the followers queue (idempotent, see the module docs); its consumer count.
    async fn declare_followers(&self, channel: &Channel) -> lapin::Result<u32> {
        let queue = channel
            .queue_declare(
                self.followers_name().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                followers_arguments(),
            )
            .await?;
        Ok(queue.consumer_count())
    }

    /// The session's events channel, opened if needed. The exchange is declared on every new
    /// one: a publish to a missing exchange would close it.
    async fn events_channel(&self, session: &Session) -> Result<Channel> {
        let mut slot = session.events.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.fresh_channel(session).await?;
        if let Err(e) = self.declare_events_exchange(&channel).await {
            Self::close(&channel).await;
            return Err(self.error(e));
        }
        *slot = Some(channel.clone());
        Ok(channel)
    }

    async fn publish_events(self: Arc<Self>, messages: Vec<String>) -> Result<()> {
        let session = self.session().await?;
        let channel = self.events_channel(&session).await?;
        let exchange = self.events_name();
        let properties = BasicProperties::default()
            .with_delivery_mode(1)
            .with_content_type("application/json".into());
        let published = async {
            for message in &messages {
                // Not mandatory: with nobody bound, the message just goes nowhere. Without
                // confirm mode the second await returns at once (`NotRequested`).
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        message.as_bytes(),
                        properties.clone(),
                    )
                    .await?
                    .await?;
            }
            Ok::<_, lapin::Error>(())
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, published).await {
            Ok(published) => published.map_err(|e| self.error(e)),
            Err(_) => Err(self.unavailable(format_args!(
                "events not sent within {} s",
                PUBLISH_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn followed(self: Arc<Self>) -> Result<bool> {
        let session = self.session().await?;
        let channel = self.events_channel(&session).await?;
        let consumers = self
            .declare_followers(&channel)
            .await
            .map_err(|e| self.error(e))?;
        Ok(consumers > 0)
    }

    async fn follow(self: Arc<Self>) -> Result<EventFeed> {
        let session = self.session().await?;
        // A channel of its own: closing it ends the subscription (and deletes its queue).
        let channel = self.fresh_channel(&session).await?;
        let (bodies_in, bodies) = mpsc::channel(FEED_BUFFER);
        let (ended_in, ended) = mpsc::unbounded_channel();
        let consumers = match self.subscribe(&channel, bodies_in, ended_in).await {
            Ok(consumers) => consumers,
            Err(e) => {
                Self::close(&channel).await;
                return Err(self.error(e));
            }
        };
        let (feed, events) = mpsc::channel(FEED_BUFFER);
        let follower = Follower {
            inner: Arc::downgrade(&self),
            display: self.display.clone(),
            channel,
            _consumers: consumers,
        };
        tokio::spawn(follower.forward(bodies, ended, feed));
        Ok(events)
    }

    /// Binds a queue of this follower to the exchange and consumes it, then consumes the
    /// followers queue: publishers count this follower only once its queue gets their events.
    async fn subscribe(
        &self,
        channel: &Channel,
        bodies: mpsc::Sender<Vec<u8>>,
        ended: mpsc::UnboundedSender<Ended>,
    ) -> lapin::Result<[Consumer; 2]> {
        self.declare_events_exchange(channel).await?;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare("".into(), options, FieldTable::default())
            .await?;
        let name = queue.name().clone();
        channel
            .queue_bind(
                name.clone(),
                self.events_name().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.declare_followers(channel).await?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let exclusive = BasicConsumeOptions {
            exclusive: true,
            ..no_ack
        };
        let events = channel
            .basic_consume(name, "".into(), exclusive, FieldTable::default())
            .await?;
        events.set_delegate({
            let ended = ended.clone();
            // Runs as lapin dispatches each delivery, in order (the returned future does
            // nothing): the order of the messages is kept.
            move |delivery: DeliveryResult| {
                match delivery {
                    // Full: the follower is far behind; the broker cannot be made to wait
                    // (no acks), so drop rather than buffer without bound.
                    Ok(Some(delivery)) => {
                        let _ = bodies.try_send(delivery.data);
                    }
                    Ok(None) => {
                        let _ = ended.send(Ended::Cancelled);
                    }
                    Err(e) => {
                        let _ = ended.send(Ended::Failed(e));
                    }
                }
                std::future::ready(())
            }
        });
        let presence = channel
            .basic_consume(
                self.followers_name().into(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        presence.set_delegate(move |delivery: DeliveryResult| {
            // Nothing is published there: only its end matters.
            let end = match delivery {
                Ok(Some(_)) => None,
                Ok(None) => Some(Ended::Cancelled),
                Err(e) => Some(Ended::Failed(e)),
            };
            if let Some(end) = end {
                let _ = ended.send(end);
            }
            std::future::ready(())
        });
        Ok([events, presence])
    }
}

/// What a follower's task holds: dropping a consumer cancels it.
struct Follower {
    /// Only to describe a failure: a dropped transport closes its connections, this one's too.
    inner: Weak<Inner>,
    display: String,
    channel: Channel,
    _consumers: [Consumer; 2],
}

impl Follower {
    /// Forwards the events until the follower drops its feed, or the subscription fails (one
    /// error, then the end); then closes the channel.
    async fn forward(
        self,
        mut bodies: mpsc::Receiver<Vec<u8>>,
        mut ended: mpsc::UnboundedReceiver<Ended>,
        feed: mpsc::Sender<Result<Vec<TaskEvent>>>,
    ) {
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        let failure = loop {
            tokio::select! {
                biased;
                () = feed.closed() => break None,
                // Before `ended`: what came before a failure is delivered first.
                Some(body) = bodies.recv() => {
                    let batch = decode(&body);
                    // Empty: not ours (another program on the exchange).
                    if !batch.is_empty() && feed.send(Ok(batch)).await.is_err() {
                        break None;
                    }
                }
                Some(end) = ended.recv() => break Some(end),
                _ = check.tick() => {
                    if !self.channel.status().connected() {
                        break Some(Ended::Lost);
                    }
                }
            }
        };
        // Closed first: publishers stop counting this follower before it hears of the failure.
        Inner::close(&self.channel).await;
        if let Some(end) = failure {
            let _ = feed.send(Err(self.error(end))).await;
        }
    }

    fn error(&self, end: Ended) -> TransportError {
        let Some(inner) = self.inner.upgrade() else {
            return TransportError::Unavailable {
                transport: self.display.clone(),
                message: "the transport was dropped".to_string(),
            };
        };
        match end {
            Ended::Failed(e) => inner.error(e),
            Ended::Cancelled => inner.unavailable(
                "the broker cancelled the subscription to events (its queue was deleted?)",
            ),
            Ended::Lost => inner.unavailable("the connection to the broker was lost"),
        }
    }
}
