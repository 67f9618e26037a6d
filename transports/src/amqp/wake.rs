//! Waiting: [`Inner::wait`] and its wake-up consumers ([`Waiter`]), one exclusive server-named
//! queue per session and waited queue, bound to the queue's exchange and to its wake-up
//! exchange (a resume), whose deliveries bump a signal. A paused queue's ready tasks do not end
//! a wait (see `pause.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lapin::message::DeliveryResult;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Consumer};
use tokio::sync::watch;
use tokio::time::Instant;

use super::session::Session;
use super::topology::{args, passive};
use super::{AmqpTransport, Inner, lock};
use crate::Result;

/// A blocked `wait` checks this often whether its connection is still there (a local check).
const WAIT_CHECK: Duration = Duration::from_secs(1);

/// `wait` timeouts are capped to this (a `Duration::MAX` must not overflow the timer).
const MAX_WAIT: Duration = Duration::from_secs(365 * 86_400);

/// The wake-up queue of one (connection, queue).
pub(super) struct Waiter {
    channel: Channel,
    _consumer: Consumer,
    /// Bumped on every delivery (and when the consumer ends).
    signal: Arc<watch::Sender<u64>>,
    dead: Arc<AtomicBool>,
}

/// Counts one blocked `wait` while it lives.
struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Blocked(counter)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AmqpTransport {
    /// `wait` calls currently blocked on a wake-up signal (for tests).
    #[doc(hidden)]
    pub fn blocked_waiters(&self) -> usize {
        self.inner.blocked_waiters.load(Ordering::SeqCst)
    }
}

impl Inner {
    /// The wake-up consumer of `queue` on this connection, made if needed.
    async fn waiter(&self, session: &Session, queue: &str) -> Result<Arc<Waiter>> {
        let current = lock(&session.waiters).get(queue).cloned();
        if let Some(waiter) = current.filter(|waiter| {
            !waiter.dead.load(Ordering::SeqCst) && waiter.channel.status().connected()
        }) {
            return Ok(waiter);
        }
        let names = self.names(queue)?;
        let channel = self.fresh_channel(session).await?;
        let consumer = async {
            let options = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            let arguments = args(&[("x-max-length", AMQPValue::LongLongInt(1))]);
            let signals = channel.queue_declare("".into(), options, arguments).await?;
            let name: ShortString = signals.name().clone();
            for exchange in [&names.ready, &names.wake] {
                channel
                    .queue_bind(
                        name.clone(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            let options = BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            };
            channel
                .basic_consume(name, "".into(), options, FieldTable::default())
                .await
        }
        .await;
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                Self::close(&channel).await;
                return Err(self.error(e));
            }
        };
        let (signal, _) = watch::channel(0u64);
        let signal = Arc::new(signal);
        let dead = Arc::new(AtomicBool::new(false));
        consumer.set_delegate({
            let (signal, dead) = (Arc::clone(&signal), Arc::clone(&dead));
            move |delivery: DeliveryResult| {
                let (signal, dead) = (Arc::clone(&signal), Arc::clone(&dead));
                async move {
                    if !matches!(delivery, Ok(Some(_))) {
                        // Cancelled or failed: the next wait makes a new one.
                        dead.store(true, Ordering::SeqCst);
                    }
                    signal.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        });
        let waiter = Arc::new(Waiter {
            channel,
            _consumer: consumer,
            signal,
            dead,
        });
        lock(&session.waiters).insert(queue.to_string(), Arc::clone(&waiter));
        Ok(waiter)
    }

    pub(super) async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        let session = self.session().await?;
        self.ensure_topology(&session, queue).await?;
        let waiter = self.waiter(&session, queue).await?;
        let mut signals = waiter.signal.subscribe();
        // After subscribing: a task published from now on bumps the signal.
        let ready = self.names(queue)?.ready;
        let channel = self.inspect_channel(&session).await?;
        let declared = channel
            .queue_declare(ready.as_str().into(), passive(), FieldTable::default())
            .await
            .map_err(|e| self.error(e))?;
        // Ready tasks end the wait, unless the queue is paused: then only a signal does (its
        // resume, or a submit) or the timeout.
        if declared.message_count() > 0 && !self.paused_now(&session, queue).await? {
            return Ok(());
        }
        let _blocked = Blocked::new(&self.blocked_waiters);
        let deadline = Instant::now() + timeout.min(MAX_WAIT);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if tokio::time::timeout(left.min(WAIT_CHECK), signals.changed())
                .await
                .is_ok()
            {
                // A signal (or the consumer ended); maybe the queue's resume.
                self.woken(queue);
                return Ok(());
            }
            // A lost connection does not reach the consumer: look at it (locally) now and
            // then, and return so that the next wait connects again.
            if waiter.dead.load(Ordering::SeqCst) || !waiter.channel.status().connected() {
                return Ok(());
            }
        }
    }
}
