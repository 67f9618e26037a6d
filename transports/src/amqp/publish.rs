//! Publishing: task ids, message bodies, publishes with the broker's confirm (ready tasks to
//! their exchange, delayed ones to their delay queue), alone or pipelined (all sent, then the
//! confirms awaited together), `submit` with its idempotency key and schedule fire time, and
//! `submit_batch`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation};
use serde::{Deserialize, Serialize};

use super::ops::pipelined;
use super::session::Session;
use super::topology::{Names, bucket_for};
use super::{Inner, lock};
use crate::task::{now_ms, schedule_key_prefix, schedule_key_time, to_epoch_ms};
use crate::{Attempt, Payload, Result, Submit, SubmitOptions, TaskId, TransportError};

/// A publish whose confirm has not come after this long fails (retryable): a broker under a
/// resource alarm blocks publishers, and the caller should back off rather than hang.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Pipelined publishes whose confirms are awaited together, at most: a larger batch is
/// published in windows of this many, one confirm wait each (bounding what is in flight).
const MAX_IN_FLIGHT: usize = 1000;

/// The last task id made by this process, and the counter of the next.
pub(super) struct IdState {
    last: i64,
    counter: u32,
}

impl IdState {
    /// The counter starts at random (see the module docs).
    pub(super) fn new() -> Self {
        IdState {
            last: 0,
            counter: fastrand::u32(..),
        }
    }
}

/// One message to publish: where to, and its body.
pub(super) struct Outgoing {
    exchange: String,
    routing_key: String,
    data: Vec<u8>,
}

/// The schedule and fire time of a [`schedule_key`](crate::schedule_key).
/// The message body: a whole task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Body {
    pub(super) id: TaskId,
    pub(super) queue: String,
    pub(super) payload: Payload,
    /// Settled attempts so far.
    pub(super) attempts: u32,
    pub(super) errors: u32,
    pub(super) crashes: u32,
    pub(super) created_at_ms: i64,
    pub(super) run_at_ms: i64,
    #[serde(default)]
    pub(super) last_error: Option<String>,
    #[serde(default)]
    pub(super) history: Vec<Attempt>,
    /// Times it came back redelivered and was given back uncharged by a claimer that could not
    /// tell whether it had caused its holder's death (see `Task::unwitnessed_returns`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) unwitnessed_returns: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn schedule_of(key: &str) -> Option<(&str, SystemTime)> {
    let rest = key.strip_prefix("schedule:")?;
    let (schedule, ms) = rest.rsplit_once(':')?;
    if ms.len() != 16 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !key.starts_with(&schedule_key_prefix(schedule)) {
        return None;
    }
    Some((schedule, schedule_key_time(key)?))
}

fn persistent_json() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

impl Inner {
    /// Increasing within the process, unique across processes (see the module docs).
    fn next_id(&self) -> TaskId {
        let mut ids = lock(&self.ids);
        ids.counter = ids.counter.wrapping_add(1);
        let candidate = (now_ms() << 22) | (i64::from(ids.counter) & 0x3F_FFFF);
        let id = candidate.max(ids.last.saturating_add(1));
        ids.last = id;
        id
    }

    pub(super) fn new_body(&self, queue: &str, payload: Payload, now: i64, run_at: i64) -> Body {
        Body {
            id: self.next_id(),
            queue: queue.to_string(),
            payload,
            attempts: 0,
            errors: 0,
            crashes: 0,
            created_at_ms: now,
            run_at_ms: run_at,
            last_error: None,
            history: Vec::new(),
            unwitnessed_returns: 0,
        }
    }

    pub(super) fn encode(&self, body: &Body) -> Result<Vec<u8>> {
        serde_json::to_vec(body).map_err(|e| self.backend(format_args!("cannot encode: {e}")))
    }

    async fn publish(
        &self,
        session: &Session,
        exchange: &str,
        routing_key: &str,
        data: &[u8],
    ) -> Result<Confirmation> {
        self.publish_with(session, exchange, routing_key, data, None, true)
            .await
    }

    /// Publish with `properties` (persistent JSON when `None`), `mandatory` or not (a message
    /// that may go nowhere: a wake-up nobody waits for), and wait for the broker's confirm.
    pub(super) async fn publish_with(
        &self,
        session: &Session,
        exchange: &str,
        routing_key: &str,
        data: &[u8],
        properties: Option<BasicProperties>,
        mandatory: bool,
    ) -> Result<Confirmation> {
        let channel = self.publish_channel(session).await?;
        let options = BasicPublishOptions {
            mandatory,
            immediate: false,
        };
        let published = async {
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    data,
                    properties.unwrap_or_else(persistent_json),
                )
                .await?
                .await
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, published).await {
            Ok(confirmation) => confirmation.map_err(|e| self.error(e)),
            Err(_) => Err(self.no_confirm()),
        }
    }

    fn no_confirm(&self) -> TransportError {
        self.unavailable(format_args!(
            "no publisher confirm within {} s (is the broker blocking publishers?)",
            PUBLISH_TIMEOUT.as_secs()
        ))
    }

    /// Publish and require the broker's ack.
    pub(super) async fn publish_confirmed(
        &self,
        session: &Session,
        exchange: &str,
        routing_key: &str,
        data: &[u8],
    ) -> Result<()> {
        let confirmation = self.publish(session, exchange, routing_key, data).await?;
        self.require_ack(confirmation, exchange, routing_key)
    }

    /// A publish's confirmation as a result: only a plain ack is a success.
    pub(super) fn require_ack(
        &self,
        confirmation: Confirmation,
        exchange: &str,
        routing_key: &str,
    ) -> Result<()> {
        let target = if exchange.is_empty() {
            routing_key
        } else {
            exchange
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                self.forget_declared();
                Err(self.unavailable(format_args!(
                    "a message for {target} was unroutable: its queue was deleted meanwhile; it is declared again on the next use"
                )))
            }
            Confirmation::Nack(_) => Err(self.backend(format_args!(
                "the broker refused a message for {target} (nack)"
            ))),
            Confirmation::NotRequested => Err(self.backend(format_args!(
                "a message for {target} got no publisher confirm"
            ))),
        }
    }

    /// Publish every message pipelined — all of a window sent, then its confirms awaited
    /// together — and require the broker's ack of each. On an error some of them may have
    /// been published.
    pub(super) async fn publish_all(&self, session: &Session, messages: &[Outgoing]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let channel = self.publish_channel(session).await?;
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        for window in messages.chunks(MAX_IN_FLIGHT) {
            let published = async {
                let sent = pipelined(
                    window
                        .iter()
                        .map(|message| {
                            channel.basic_publish(
                                message.exchange.as_str().into(),
                                message.routing_key.as_str().into(),
                                options,
                                &message.data,
                                persistent_json(),
                            )
                        })
                        .collect(),
                )
                .await;
                // Every publish is on its way (or failed to be): now the confirms.
                let mut confirms = Vec::with_capacity(sent.len());
                for publish in sent {
                    confirms.push(publish.map_err(|e| self.error(e))?);
                }
                let mut confirmations = Vec::with_capacity(confirms.len());
                for confirm in confirms {
                    confirmations.push(confirm.await.map_err(|e| self.error(e))?);
                }
                Ok::<_, TransportError>(confirmations)
            };
            let confirmations = match tokio::time::timeout(PUBLISH_TIMEOUT, published).await {
                Ok(confirmations) => confirmations?,
                Err(_) => return Err(self.no_confirm()),
            };
            for (confirmation, message) in confirmations.into_iter().zip(window) {
                self.require_ack(confirmation, &message.exchange, &message.routing_key)?;
            }
        }
        Ok(())
    }

    /// Where a task goes now and its encoding: its exchange when it is ready, else its delay
    /// queue, chosen by the time left now (call it after declaring, which may take a while the
    /// first time).
    fn outgoing_task(&self, names: &Names, body: &Body) -> Result<Outgoing> {
        let data = self.encode(body)?;
        let now = now_ms();
        Ok(if body.run_at_ms > now {
            let bucket = bucket_for(body.run_at_ms - now) as usize;
            Outgoing {
                exchange: String::new(),
                routing_key: names.buckets[bucket].clone(),
                data,
            }
        } else {
            Outgoing {
                exchange: names.ready.clone(),
                routing_key: String::new(),
                data,
            }
        })
    }

    /// Publish a task: ready (to its exchange) or delayed (to its delay queue).
    pub(super) async fn publish_task(&self, session: &Session, body: &Body) -> Result<()> {
        self.ensure_topology(session, &body.queue).await?;
        let message = self.outgoing_task(&self.names(&body.queue)?, body)?;
        self.publish_confirmed(
            session,
            &message.exchange,
            &message.routing_key,
            &message.data,
        )
        .await
    }

    /// Publish new tasks, pipelined and in order, after declaring and registering their
    /// queues (each once): `submit_batch`, and the follow-ups of completions.
    pub(super) async fn publish_new_tasks(&self, session: &Session, bodies: &[Body]) -> Result<()> {
        let mut queues: HashMap<&str, Names> = HashMap::new();
        for body in bodies {
            if !queues.contains_key(body.queue.as_str()) {
                self.ensure_topology(session, &body.queue).await?;
                self.register(session, &body.queue).await?;
                queues.insert(&body.queue, self.names(&body.queue)?);
            }
        }
        let messages = bodies
            .iter()
            .map(|body| match queues.get(body.queue.as_str()) {
                Some(names) => self.outgoing_task(names, body),
                None => self.outgoing_task(&self.names(&body.queue)?, body),
            })
            .collect::<Result<Vec<_>>>()?;
        self.publish_all(session, &messages).await
    }

    /// `submit_batch`: every task published pipelined, one wait for all the confirms (per
    /// window of [`MAX_IN_FLIGHT`]). Ids in the order given, which is also the claim order.
    pub(super) async fn submit_batch(
        self: Arc<Self>,
        tasks: Vec<Submit>,
        run_at: Option<SystemTime>,
    ) -> Result<Vec<TaskId>> {
        let session = self.session().await?;
        let now = now_ms();
        let run_at = run_at.map_or(now, to_epoch_ms);
        let bodies: Vec<Body> = tasks
            .into_iter()
            .map(|task| self.new_body(&task.queue, task.payload, now, run_at))
            .collect();
        self.publish_new_tasks(&session, &bodies).await?;
        Ok(bodies.iter().map(|body| body.id).collect())
    }

    pub(super) async fn submit(
        self: Arc<Self>,
        queue: String,
        payload: Payload,
        opts: SubmitOptions,
    ) -> Result<Option<TaskId>> {
        let session = self.session().await?;
        let now = now_ms();
        let body = self.new_body(&queue, payload, now, opts.run_at.map_or(now, to_epoch_ms));
        self.ensure_topology(&session, &queue).await?;
        self.register(&session, &queue).await?;
        if let Some(key) = &opts.idempotency_key {
            let name = self.declare_key(&session, key).await?;
            let marker = body.id.to_string();
            match self.publish(&session, "", &name, marker.as_bytes()).await? {
                Confirmation::Ack(None) => {}             // first use of the key
                Confirmation::Nack(_) => return Ok(None), // used already
                Confirmation::Ack(Some(_)) => {
                    return Err(self.unavailable(format_args!(
                        "the idempotency key queue {name} disappeared while it was used; try again"
                    )));
                }
                Confirmation::NotRequested => {
                    return Err(self.backend("an idempotency key got no publisher confirm"));
                }
            }
        }
        self.publish_task(&session, &body).await?;
        if let Some((schedule, at)) = opts.idempotency_key.as_deref().and_then(schedule_of) {
            let name = self.declare_fires(&session, schedule).await?;
            let at = to_epoch_ms(at).to_string();
            self.publish_confirmed(&session, "", &name, at.as_bytes())
                .await?;
        }
        Ok(Some(body.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::AmqpTransport;
    use crate::task::from_epoch_ms;

    #[test]
    fn schedule_keys_are_recognised() {
        let at = from_epoch_ms(1_795_000_000_300);
        let key = crate::schedule_key("nightly:db", at);
        assert_eq!(schedule_of(&key), Some(("nightly:db", at)));
        assert_eq!(schedule_of("schedule:x:12"), None);
        assert_eq!(schedule_of("my-key"), None);
    }

    #[test]
    fn ids_increase() {
        let t = AmqpTransport::open_uri("amqp://h").unwrap();
        let ids: Vec<TaskId> = (0..10_000).map(|_| t.inner.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids[0] > 0);
    }
}
