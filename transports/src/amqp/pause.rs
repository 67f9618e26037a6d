//! Pausing queues. RabbitMQ keeps no flags, so a queue's pause flag is a message: `P.Q.paused`
//! (declared with the queue's other objects, `x-max-length` 1, `x-overflow` `reject-publish`)
//! holds one persistent marker while `Q` is paused, and nothing otherwise.
//!
//! * Pausing publishes the marker: the broker's ack means this call paused the queue, its nack
//!   (the queue is full) that it was paused already — so two operators pausing at once see
//!   exactly one change. The queue's name goes to the registry, so that a paused queue without
//!   tasks is listed by `paused` and `stats`.
//! * Resuming purges the queue (the purged count tells whether it was paused), then publishes a
//!   wake-up to the fanout exchange `P.Q.wake`, which every waiter's signal queue is bound to
//!   (besides `P.Q`): waiters return, and the tasks are not touched.
//! * Claims look at the flag — a passive declare of `P.Q.paused`, whose message count is the
//!   flag — at most every [`PAUSE_CACHE`] per process and queue, so a paused queue stops handing
//!   out tasks to every worker within that time (plus one claim's round trip); a process that
//!   pauses or resumes knows at once, and one whose waiter is woken asks again. A wait that
//!   finds ready tasks asks the broker afresh, and blocks on a paused queue until it is resumed
//!   (or a task is submitted: a spurious wake-up) or its timeout passes.
//!
//! A paused *schedule* has a flag of its own, `P._paused_schedule.ID`, which schedulers read
//! once per fire, and its id on the listing `P._paused_schedules`, which tells the console
//! which flags to read (see [`Inner::set_schedule_paused`]).
//!
//! A message rather than the existence of a queue: a queue's check never meets `NOT_FOUND`
//! (which closes the channel it was asked on, a channel to open again for the next check of
//! every queue that is not paused), and pausing and resuming are each one atomic step. (A
//! schedule's flag is checked on a channel of its own: once per fire.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::QueuePurgeOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};

use super::ops::join_all;
use super::session::{Session, is_not_found};
use super::topology::passive;
use super::{Inner, lock};
use crate::Result;

/// A claim trusts the pause flag it saw this long (the requirement: workers stop claiming
/// within a second of a pause).
pub(super) const PAUSE_CACHE: Duration = Duration::from_millis(500);

/// Queues whose flag is remembered at most (more: the memory is cleared).
const MAX_REMEMBERED: usize = 10_000;

/// Queues whose flag `paused` asks for at once (one channel each).
const PROBES_AT_ONCE: usize = 32;

impl Inner {
    /// Remember the flag of `queue` as seen now.
    pub(super) fn saw_paused(&self, queue: &str, paused: bool) {
        let mut pauses = lock(&self.pauses);
        if pauses.len() >= MAX_REMEMBERED && !pauses.contains_key(queue) {
            pauses.clear();
        }
        pauses.insert(queue.to_string(), (Instant::now(), paused));
    }

    /// A waiter on `queue` was woken, maybe by its resume: if it was seen paused, the next
    /// claim asks the broker again.
    pub(super) fn woken(&self, queue: &str) {
        let mut pauses = lock(&self.pauses);
        if pauses.get(queue).is_some_and(|(_, paused)| *paused) {
            pauses.remove(queue);
        }
    }

    /// Whether claims of `queue` hand out nothing: the flag seen within [`PAUSE_CACHE`], else
    /// the broker's. Its objects are declared.
    pub(super) async fn claims_paused(&self, session: &Session, queue: &str) -> Result<bool> {
        let seen = lock(&self.pauses).get(queue).copied();
        match seen {
            Some((at, paused)) if at.elapsed() < PAUSE_CACHE => Ok(paused),
            _ => self.paused_now(session, queue).await,
        }
    }

    /// The broker's pause flag of `queue`, whose objects are declared (a passive declare on
    /// the shared channel for them).
    pub(super) async fn paused_now(&self, session: &Session, queue: &str) -> Result<bool> {
        let name = self.names(queue)?.paused;
        let channel = self.inspect_channel(session).await?;
        let declared = channel
            .queue_declare(name.as_str().into(), passive(), FieldTable::default())
            .await;
        let paused = match declared {
            Ok(declared) => declared.message_count() > 0,
            Err(e) if is_not_found(&e) => {
                // Deleted behind our back: not paused; declared again on the next use.
                lock(&self.declared).remove(queue);
                false
            }
            Err(e) => return Err(self.error(e)),
        };
        self.saw_paused(queue, paused);
        Ok(paused)
    }

    /// The flag of `queue` on a channel of its own: `None` when its pause queue does not exist
    /// (never used, or declared by a rex without pauses: not paused).
    async fn probe_paused(&self, session: &Session, queue: &str) -> Result<Option<bool>> {
        let name = self.names(queue)?.paused;
        let channel = self.fresh_channel(session).await?;
        let declared = channel
            .queue_declare(name.as_str().into(), passive(), FieldTable::default())
            .await;
        Self::close(&channel).await;
        match declared {
            Ok(declared) => {
                let paused = declared.message_count() > 0;
                self.saw_paused(queue, paused);
                Ok(Some(paused))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    pub(super) async fn set_paused(self: Arc<Self>, queue: String, paused: bool) -> Result<bool> {
        let session = self.session().await?;
        self.ensure_topology(&session, &queue).await?;
        let names = self.names(&queue)?;
        let changed = if paused {
            self.register(&session, &queue).await?;
            let marker = self
                .publish_with(&session, "", &names.paused, b"paused", None, true)
                .await?;
            match marker {
                Confirmation::Nack(_) => false, // the queue holds the marker already
                confirmation => {
                    self.require_ack(confirmation, "", &names.paused)?;
                    true
                }
            }
        } else {
            let channel = self.fresh_channel(&session).await?;
            let purged = channel
                .queue_purge(names.paused.as_str().into(), QueuePurgeOptions::default())
                .await;
            Self::close(&channel).await;
            let changed = purged.map_err(|e| self.error(e))? > 0;
            // Wake the waiters (not mandatory: there may be none).
            let transient = BasicProperties::default().with_delivery_mode(1);
            let woken = self
                .publish_with(&session, &names.wake, "", b"", Some(transient), false)
                .await?;
            self.require_ack(woken, &names.wake, "")?;
            changed
        };
        self.saw_paused(&queue, paused);
        Ok(changed)
    }

    /// The queues of the registry whose pause queue holds its marker, by name.
    pub(super) async fn paused(self: Arc<Self>) -> Result<Vec<String>> {
        let session = self.session().await?;
        let queues: Vec<String> = self.registry_queues(&session).await?.into_iter().collect();
        let mut paused = Vec::new();
        for chunk in queues.chunks(PROBES_AT_ONCE) {
            let probes = chunk
                .iter()
                .map(|queue| self.probe_paused(&session, queue))
                .collect();
            for (queue, flag) in chunk.iter().zip(join_all(probes).await) {
                if flag? == Some(true) {
                    paused.push(queue.clone());
                }
            }
        }
        Ok(paused)
    }

    /// Pausing a schedule publishes a marker to its flag `P._paused_schedule.ID` (a queue of
    /// at most one message, like a queue's pause flag: the broker's ack means this call paused
    /// it, its nack that it was paused already) and its id to the listing `P._paused_schedules`
    /// (once); resuming purges the flag (the purged count says whether it was paused) and
    /// deletes the id from the listing. The flag decides: schedulers read it
    /// ([`Inner::schedule_paused`]) and the listing shows only the ids whose flag is set, so an
    /// id a reader at the same instant hid from this call (a browse takes the messages for a
    /// moment) changes nothing but the listing's length.
    pub(super) async fn set_schedule_paused(
        self: Arc<Self>,
        id: String,
        paused: bool,
    ) -> Result<bool> {
        let session = self.session().await?;
        // Its flag exists after this, with a pause made by an older rex moved onto it.
        Arc::clone(&self).schedule_paused(id.clone()).await?;
        let flag = self.schedule_flag_name(&id);
        let changed = if paused {
            match self
                .publish_with(&session, "", &flag, b"paused", None, true)
                .await?
            {
                Confirmation::Nack(_) => false, // the flag holds its marker already
                confirmation => {
                    self.require_ack(confirmation, "", &flag)?;
                    true
                }
            }
        } else {
            let channel = self.fresh_channel(&session).await?;
            let purged = channel
                .queue_purge(flag.as_str().into(), QueuePurgeOptions::default())
                .await;
            Self::close(&channel).await;
            purged.map_err(|e| self.error(e))? > 0
        };
        let (listed, channel) = self.listed(&session, &id).await?;
        self.ack_and_close(&channel, if paused { Vec::new() } else { listed.clone() })
            .await?;
        if paused && listed.is_empty() {
            let name = self.paused_schedules_name();
            let properties = BasicProperties::default().with_delivery_mode(2);
            let confirmation = self
                .publish_with(&session, "", &name, id.as_bytes(), Some(properties), true)
                .await?;
            self.require_ack(confirmation, "", &name)?;
        }
        Ok(changed)
    }

    /// The listing's messages naming `id`, held on the returned channel until it is closed.
    async fn listed(
        &self,
        session: &Session,
        id: &str,
    ) -> Result<(Vec<lapin::types::DeliveryTag>, lapin::Channel)> {
        let name = self.declare_paused_schedules(session).await?;
        let Some((channel, messages)) = self.browse(session, &name).await? else {
            return Err(self.backend(format_args!("the queue {name} vanished")));
        };
        let mine = messages
            .into_iter()
            .filter(|(_, data)| data.as_slice() == id.as_bytes())
            .map(|(tag, _)| tag)
            .collect();
        Ok((mine, channel))
    }

    /// The flag of schedule `id`: `None` when it has none (never paused or asked about by
    /// this version). Read with a passive declare, which takes nothing, so a reader at the
    /// same instant cannot hide it.
    async fn schedule_flag(&self, session: &Session, id: &str) -> Result<Option<bool>> {
        let flag = self.schedule_flag_name(id);
        let channel = self.fresh_channel(session).await?;
        let declared = channel
            .queue_declare(flag.as_str().into(), passive(), FieldTable::default())
            .await;
        Self::close(&channel).await;
        match declared {
            Ok(declared) => Ok(Some(declared.message_count() > 0)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Whether schedule `id` is paused, from its flag. A schedule without one is asked about
    /// for the first time by this version: it is paused if an older rex (which kept only the
    /// listing) listed it, and its flag is made to say so, so that every later check is one
    /// passive declare.
    pub(super) async fn schedule_paused(self: Arc<Self>, id: String) -> Result<bool> {
        let session = self.session().await?;
        if let Some(paused) = self.schedule_flag(&session, &id).await? {
            return Ok(paused);
        }
        let (listed, channel) = self.listed(&session, &id).await?;
        Self::close(&channel).await;
        let flag = self.declare_schedule_flag(&session, &id).await?;
        if !listed.is_empty() {
            let marker = self
                .publish_with(&session, "", &flag, b"paused", None, true)
                .await?;
            if !matches!(marker, Confirmation::Nack(_)) {
                self.require_ack(marker, "", &flag)?;
            }
        }
        Ok(!listed.is_empty())
    }

    /// The listed schedules whose flag is set (or, without a flag, listed by an older rex).
    pub(super) async fn paused_schedules(self: Arc<Self>) -> Result<Vec<String>> {
        let session = self.session().await?;
        let name = self.declare_paused_schedules(&session).await?;
        let Some((channel, messages)) = self.browse(&session, &name).await? else {
            return Ok(Vec::new());
        };
        Self::close(&channel).await;
        let ids: std::collections::BTreeSet<String> = messages
            .into_iter()
            .filter_map(|(_, data)| String::from_utf8(data).ok())
            .collect();
        let ids: Vec<String> = ids.into_iter().collect();
        let mut paused = Vec::new();
        for chunk in ids.chunks(PROBES_AT_ONCE) {
            let flags = chunk
                .iter()
                .map(|id| self.schedule_flag(&session, id))
                .collect();
            for (id, flag) in chunk.iter().zip(join_all(flags).await) {
                if flag?.unwrap_or(true) {
                    paused.push(id.clone());
                }
            }
        }
        Ok(paused)
    }
}
