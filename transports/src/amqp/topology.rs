//! The broker objects and their names (see the table in the module docs). This file owns every
//! name: the objects of a task queue ([`Names`]: exchange, ready queue, failed queue, delay
//! buckets, pause queue, wake-up exchange), the registry of queue names, idempotency-key queues
//! and schedule fires queues (hashed when too long), the masters' heartbeat queue, and the delay
//! bucket math. It also declares them, each once per
//! process, and forgets what it declared when something was deleted behind its back.

use std::sync::atomic::Ordering;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::ops::join_all;
use super::session::{Session, is_not_found};
use super::{Inner, lock};
use crate::{Result, TransportError};

/// Delay queues `P.Q.delay.0` to `P.Q.delay.22`.
pub(super) const BUCKETS: u32 = 23;

/// TTL of the smallest delay queue, in milliseconds; each next one doubles it.
const BUCKET_BASE_MS: i64 = 8;

/// Idempotency keys are forgotten this long after their last use.
const KEY_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Fire times kept per schedule.
const FIRES_KEPT: i64 = 16;

/// Heartbeat records kept at most (the oldest go first): a bound, should nobody list them.
const MASTER_RECORDS_KEPT: i64 = 10_000;

/// Messages of throughput history kept at most (the oldest go first): a day of one message a
/// minute from each of 60 masters, should their expiry not reach them first.
const HISTORY_MESSAGES_KEPT: i64 = 86_400;

/// The longest broker object name.
const MAX_NAME: usize = 255;

/// Channels over which the queues of a task queue are declared (the broker creates those of
/// one channel one after the other).
const DECLARING_CHANNELS: usize = 4;

/// Key queues remembered for [`AmqpTransport::delete_everything`].
///
/// [`AmqpTransport::delete_everything`]: super::AmqpTransport::delete_everything
const MAX_TRACKED_KEYS: usize = 10_000;

/// Object names of one task queue.
pub(super) struct Names {
    /// The exchange and the ready queue.
    pub(super) ready: String,
    pub(super) failed: String,
    pub(super) buckets: Vec<String>,
    /// The pause queue: one marker message while the queue is paused (see `pause.rs`).
    pub(super) paused: String,
    /// The fanout exchange that wakes the queue's waiters without a task (a resume).
    pub(super) wake: String,
}

/// The delay queue for a task `remaining` milliseconds from ready: the largest whose TTL is not
/// longer, or the smallest.
pub(super) fn bucket_for(remaining_ms: i64) -> u32 {
    let units = u64::try_from(remaining_ms / BUCKET_BASE_MS).unwrap_or(0);
    if units == 0 {
        0
    } else {
        (63 - units.leading_zeros()).min(BUCKETS - 1)
    }
}

fn bucket_ttl_ms(bucket: u32) -> i64 {
    BUCKET_BASE_MS << bucket
}

pub(super) fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in pairs {
        table.insert((*name).into(), value.clone());
    }
    table
}

pub(super) fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions::durable()
}

impl Inner {
    pub(super) fn names(&self, queue: &str) -> Result<Names> {
        let ready = format!("{}.{queue}", self.prefix);
        let longest = format!("{ready}.delay.{}", BUCKETS - 1);
        if longest.len() > MAX_NAME {
            return Err(TransportError::Unsupported(format!(
                "{}: queue name \"{queue}\" is too long for RabbitMQ ({} bytes at most with the prefix)",
                self.display,
                MAX_NAME - (longest.len() - queue.len())
            )));
        }
        // Queue names hold no `.`: `P.Q.paused` is no other queue's object (while
        // `P.paused.Q` would be `P.Q'.failed` for Q = "failed", Q' = "paused").
        Ok(Names {
            failed: format!("{ready}.failed"),
            buckets: (0..BUCKETS).map(|k| format!("{ready}.delay.{k}")).collect(),
            paused: format!("{ready}.paused"),
            wake: format!("{ready}.wake"),
            ready,
        })
    }

    pub(super) fn registry_name(&self) -> String {
        format!("{}._queues", self.prefix)
    }

    pub(super) fn masters_name(&self) -> String {
        format!("{}._masters", self.prefix)
    }

    pub(super) fn paused_schedules_name(&self) -> String {
        format!("{}._paused_schedules", self.prefix)
    }

    /// The flag of one schedule: holds a marker while it is paused (see `pause.rs`).
    pub(super) fn schedule_flag_name(&self, id: &str) -> String {
        self.aux_name("_paused_schedule", id)
    }

    pub(super) fn history_name(&self) -> String {
        format!("{}._history", self.prefix)
    }

    /// The fanout exchange of lifecycle events (`P._events`: a task queue may be named
    /// `events`, and `P.events` is its exchange).
    pub(super) fn events_name(&self) -> String {
        format!("{}._events", self.prefix)
    }

    /// The queue every follower of the events consumes, only to be counted (`events.rs`).
    pub(super) fn followers_name(&self) -> String {
        format!("{}._events.followers", self.prefix)
    }

    /// `P.KIND.NAME`, or `P.KINDh.HASH` when that is too long for the broker.
    fn aux_name(&self, kind: &str, name: &str) -> String {
        let full = format!("{}.{kind}.{name}", self.prefix);
        if full.len() <= MAX_NAME {
            full
        } else {
            format!(
                "{}.{kind}h.{:016x}",
                self.prefix,
                crate::hash::fnv1a64(name.as_bytes())
            )
        }
    }

    fn key_name(&self, key: &str) -> String {
        self.aux_name("_key", key)
    }

    pub(super) fn fires_name(&self, schedule: &str) -> String {
        self.aux_name("_fires", schedule)
    }

    /// Declare the objects of `queue` (once per process). The broker creates the queues of
    /// one channel one after the other: they are spread over a few channels.
    pub(super) async fn ensure_topology(&self, session: &Session, queue: &str) -> Result<()> {
        if lock(&self.declared).contains(queue) {
            return Ok(());
        }
        let names = self.names(queue)?;
        let opened = join_all(
            (0..DECLARING_CHANNELS)
                .map(|_| self.fresh_channel(session))
                .collect(),
        )
        .await;
        let mut channels = Vec::with_capacity(opened.len());
        let mut failure = None;
        for channel in opened {
            match channel {
                Ok(channel) => channels.push(channel),
                Err(e) => failure = Some(e),
            }
        }
        let declared = match failure {
            Some(e) => Err(e),
            None => self.declare_topology(&channels, &names).await,
        };
        join_all(channels.iter().map(Self::close).collect()).await;
        declared?;
        lock(&self.declared).insert(queue.to_string());
        Ok(())
    }

    async fn declare_topology(&self, channels: &[Channel], names: &Names) -> Result<()> {
        let Some(first) = channels.first() else {
            return Err(self.backend("no channel to declare on"));
        };
        let exchange = |name: &str| {
            first.exchange_declare(
                name.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
        };
        let exchanges = join_all(vec![exchange(&names.ready), exchange(&names.wake)]);
        let mut queues: Vec<(&str, FieldTable)> = (0..BUCKETS)
            .zip(&names.buckets)
            .map(|(k, bucket)| {
                let arguments = args(&[
                    ("x-message-ttl", AMQPValue::LongLongInt(bucket_ttl_ms(k))),
                    (
                        "x-dead-letter-exchange",
                        AMQPValue::LongString(names.ready.as_str().into()),
                    ),
                ]);
                (bucket.as_str(), arguments)
            })
            .collect();
        queues.push((&names.failed, FieldTable::default()));
        queues.push((&names.ready, FieldTable::default()));
        let marker = args(&[
            ("x-max-length", AMQPValue::LongLongInt(1)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ]);
        queues.push((&names.paused, marker));
        let declares = queues
            .into_iter()
            .enumerate()
            .map(|(i, (name, arguments))| {
                channels[i % channels.len()].queue_declare(name.into(), durable(), arguments)
            })
            .collect();
        let (exchanges, declares) = tokio::join!(exchanges, join_all(declares));
        for declared in exchanges {
            declared.map_err(|e| self.error(e))?;
        }
        for declared in declares {
            declared.map_err(|e| self.error(e))?;
        }
        first
            .queue_bind(
                names.ready.as_str().into(),
                names.ready.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.error(e))
    }

    /// Forget every declared object (after an unroutable publish: something was deleted).
    pub(super) fn forget_declared(&self) {
        lock(&self.declared).clear();
        lock(&self.registered).clear();
        lock(&self.fires).clear();
        self.registry_declared.store(false, Ordering::SeqCst);
        self.masters_declared.store(false, Ordering::SeqCst);
        self.history_declared.store(false, Ordering::SeqCst);
        self.schedules_declared.store(false, Ordering::SeqCst);
    }

    /// Declare a queue on a channel of its own (declares register in the channel's memory;
    /// this keeps that from growing, and a refused declare from closing a shared channel).
    async fn declare_alone(
        &self,
        session: &Session,
        name: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        let channel = self.fresh_channel(session).await?;
        let declared = channel
            .queue_declare(name.into(), durable(), arguments)
            .await;
        Self::close(&channel).await;
        declared.map(|_| ()).map_err(|e| self.error(e))
    }

    /// Publish `name` to the registry, the first time this process submits to it.
    pub(super) async fn register(&self, session: &Session, queue: &str) -> Result<()> {
        if lock(&self.registered).contains(queue) {
            return Ok(());
        }
        let registry = self.registry_name();
        if !self.registry_declared.load(Ordering::SeqCst) {
            self.declare_alone(session, &registry, FieldTable::default())
                .await?;
            self.registry_declared.store(true, Ordering::SeqCst);
        }
        self.publish_confirmed(session, "", &registry, queue.as_bytes())
            .await?;
        lock(&self.registered).insert(queue.to_string());
        Ok(())
    }

    /// Declare the queue of the idempotency key `key` (at every use: that renews its expiry)
    /// and remember it for cleanup. Returns its name.
    pub(super) async fn declare_key(&self, session: &Session, key: &str) -> Result<String> {
        let name = self.key_name(key);
        let arguments = args(&[
            ("x-max-length", AMQPValue::LongLongInt(1)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
            ("x-expires", AMQPValue::LongLongInt(KEY_TTL_MS)),
        ]);
        self.declare_alone(session, &name, arguments).await?;
        {
            let mut keys = lock(&self.keys);
            if keys.len() < MAX_TRACKED_KEYS {
                keys.insert(name.clone());
            }
        }
        Ok(name)
    }

    /// Declare the masters' heartbeat queue (once per process). Returns its name.
    pub(super) async fn declare_masters(&self, session: &Session) -> Result<String> {
        let name = self.masters_name();
        if !self.masters_declared.load(Ordering::SeqCst) {
            let arguments = args(&[("x-max-length", AMQPValue::LongLongInt(MASTER_RECORDS_KEPT))]);
            self.declare_alone(session, &name, arguments).await?;
            self.masters_declared.store(true, Ordering::SeqCst);
        }
        Ok(name)
    }

    /// Declare the flag of schedule `id` (at every use: pauses are rare). Returns its name.
    pub(super) async fn declare_schedule_flag(
        &self,
        session: &Session,
        id: &str,
    ) -> Result<String> {
        let name = self.schedule_flag_name(id);
        let marker = args(&[
            ("x-max-length", AMQPValue::LongLongInt(1)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ]);
        self.declare_alone(session, &name, marker).await?;
        lock(&self.schedule_flags).insert(name.clone());
        Ok(name)
    }

    /// Declare the queue of paused schedules (once per process). Returns its name.
    pub(super) async fn declare_paused_schedules(&self, session: &Session) -> Result<String> {
        let name = self.paused_schedules_name();
        if !self.schedules_declared.load(Ordering::SeqCst) {
            self.declare_alone(session, &name, FieldTable::default())
                .await?;
            self.schedules_declared.store(true, Ordering::SeqCst);
        }
        Ok(name)
    }

    /// Declare the throughput history's queue (once per process). Returns its name.
    pub(super) async fn declare_history(&self, session: &Session) -> Result<String> {
        let name = self.history_name();
        if !self.history_declared.load(Ordering::SeqCst) {
            let arguments = args(&[(
                "x-max-length",
                AMQPValue::LongLongInt(HISTORY_MESSAGES_KEPT),
            )]);
            self.declare_alone(session, &name, arguments).await?;
            self.history_declared.store(true, Ordering::SeqCst);
        }
        Ok(name)
    }

    /// Declare the fires queue of `schedule` (once per process). Returns its name.
    pub(super) async fn declare_fires(&self, session: &Session, schedule: &str) -> Result<String> {
        let name = self.fires_name(schedule);
        if !lock(&self.fires).contains(&name) {
            let arguments = args(&[("x-max-length", AMQPValue::LongLongInt(FIRES_KEPT))]);
            self.declare_alone(session, &name, arguments).await?;
            lock(&self.fires).insert(name.clone());
        }
        Ok(name)
    }

    /// Whether a queue exists, on a channel of its own (a `NOT_FOUND` closes it).
    pub(super) async fn exists(&self, session: &Session, name: &str) -> Result<bool> {
        let channel = self.fresh_channel(session).await?;
        let result = channel
            .queue_declare(name.into(), passive(), FieldTable::default())
            .await;
        Self::close(&channel).await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::AmqpTransport;

    #[test]
    fn delays_pick_the_largest_bucket_that_fits() {
        assert_eq!(bucket_for(-5), 0);
        assert_eq!(bucket_for(0), 0);
        assert_eq!(bucket_for(7), 0);
        assert_eq!(bucket_for(8), 0);
        assert_eq!(bucket_for(15), 0);
        assert_eq!(bucket_for(16), 1);
        assert_eq!(bucket_for(300), 5);
        assert_eq!(bucket_ttl_ms(5), 256);
        assert_eq!(bucket_for(3_600_000), 18);
        assert_eq!(bucket_for(i64::MAX), BUCKETS - 1);
        assert_eq!(bucket_ttl_ms(BUCKETS - 1), 33_554_432);
    }

    #[test]
    fn long_names_are_hashed() {
        let t = AmqpTransport::open_uri("amqp://h?prefix=pfx").unwrap();
        assert_eq!(t.inner.key_name("k1"), "pfx._key.k1");
        let long = "k".repeat(300);
        let hashed = t.inner.key_name(&long);
        assert_eq!(
            hashed,
            format!("pfx._keyh.{:016x}", crate::hash::fnv1a64(long.as_bytes()))
        );
        assert_eq!(hashed, t.inner.key_name(&long), "stable");
        assert!(t.inner.names(&"q".repeat(250)).is_err());
        assert_eq!(t.inner.names("q1").unwrap().buckets[22], "pfx.q1.delay.22");
        let names = t.inner.names("q1").unwrap();
        assert_eq!(
            (names.paused.as_str(), names.wake.as_str()),
            ("pfx.q1.paused", "pfx.q1.wake")
        );
        assert_eq!(t.inner.masters_name(), "pfx._masters");
        assert_eq!(t.inner.followers_name(), "pfx._events.followers");
    }
}
