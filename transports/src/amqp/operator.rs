//! The operator's side: counts and stats (passive declares), browsing a queue (take without
//! acknowledging, then close the channel), listing the registry and the failed tasks by
//! browsing their queues, retrying failed tasks, purging, the last fire of a schedule, and
//! deleting everything (for tests).

use std::collections::{BTreeSet, HashSet};
use std::time::SystemTime;

use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{DeliveryTag, FieldTable};

use super::ops::{join_all, pipelined};
use super::session::{Session, is_not_found};
use super::topology::{BUCKETS, passive};
use super::{AmqpTransport, Body, Inner, lock};
use crate::task::{from_epoch_ms, now_ms};
use crate::{
    PurgeWhich, QueueCounts, QueueStats, Result, RetriedTask, Selector, TaskState, TaskSummary,
    TransportError, validate_queue_name,
};

/// `basic.get`s a browse sends pipelined at a time.
const BROWSE_WINDOW: usize = 64;

/// What a browse took: its channel (close it to give the messages back) and the messages, by
/// delivery tag, in queue order.
pub(super) type Browsed = (Channel, Vec<(DeliveryTag, Vec<u8>)>);

/// The message counts of a task queue's objects.
pub(super) struct ObjectCounts {
    /// Of each delay queue, by bucket.
    pub(super) buckets: Vec<u64>,
    pub(super) failed: u64,
    pub(super) ready: u64,
    /// The pause queue holds its marker.
    pub(super) paused: bool,
}

impl AmqpTransport {
    /// Delete every broker object of this prefix this process knows of: those of the queues
    /// in the registry and of the queues it used, the registry, the masters' heartbeats, the
    /// events' exchange and followers queue, and the key and fires queues it declared. For
    /// tests; best effort.
    #[doc(hidden)]
    pub async fn delete_everything(&self) -> Result<()> {
        self.inner.delete_everything().await
    }
}

impl Inner {
    /// Message counts of `names` by passive declares pipelined on one channel; `None` when
    /// one of them does not exist.
    async fn message_counts(
        &self,
        session: &Session,
        names: &[&str],
        known: bool,
    ) -> Result<Option<Vec<u64>>> {
        // A queue declared by this process exists: the shared channel will do. Otherwise a
        // NOT_FOUND may close the channel, so it must be one of our own.
        let channel = if known {
            self.inspect_channel(session).await?
        } else {
            self.fresh_channel(session).await?
        };
        let declares = names
            .iter()
            .map(|name| channel.queue_declare((*name).into(), passive(), FieldTable::default()))
            .collect();
        let results = join_all(declares).await;
        if !known {
            Self::close(&channel).await;
        }
        let mut counts = Vec::with_capacity(results.len());
        let mut missing = false;
        let mut failure = None;
        for result in results {
            match result {
                Ok(queue) => counts.push(u64::from(queue.message_count())),
                Err(e) if is_not_found(&e) => missing = true,
                Err(e) => failure = Some(e),
            }
        }
        if missing {
            return Ok(None);
        }
        match failure {
            Some(e) => Err(self.error(e)),
            None => Ok(Some(counts)),
        }
    }

    /// The message counts of `queue`'s objects (declaring again those deleted meanwhile), and
    /// its pause flag; `None` when it was never used.
    pub(super) async fn object_counts(
        &self,
        session: &Session,
        queue: &str,
    ) -> Result<Option<ObjectCounts>> {
        let names = self.names(queue)?;
        // The delay queues first: a task moving on to the ready queue meanwhile is counted
        // (possibly twice, never not at all).
        let mut all: Vec<&str> = names.buckets.iter().map(String::as_str).collect();
        all.extend([names.failed.as_str(), &names.ready, &names.paused]);
        let known = lock(&self.declared).contains(queue);
        let mut counts = self.message_counts(session, &all, known).await?;
        if counts.is_none() {
            if !self.exists(session, &names.ready).await? {
                return Ok(None); // never used
            }
            // Some of its objects were deleted (or its pause queue is new): declare them again.
            lock(&self.declared).remove(queue);
            self.ensure_topology(session, queue).await?;
            counts = self.message_counts(session, &all, false).await?;
        }
        let counts = counts.ok_or_else(|| {
            self.backend(format_args!(
                "the queues of {queue} disappear while counted"
            ))
        })?;
        let buckets = BUCKETS as usize;
        let paused = counts[buckets + 2] > 0;
        self.saw_paused(queue, paused);
        Ok(Some(ObjectCounts {
            buckets: counts[..buckets].to_vec(),
            failed: counts[buckets],
            ready: counts[buckets + 1],
            paused,
        }))
    }

    /// Counts of `queue` (`running`: this process's claims), and its pause flag.
    pub(super) async fn counts_and_flag(
        &self,
        session: &Session,
        queue: &str,
    ) -> Result<(QueueCounts, bool)> {
        let running = self.running(queue);
        let Some(counts) = self.object_counts(session, queue).await? else {
            let counts = QueueCounts {
                running,
                ..QueueCounts::default()
            };
            return Ok((counts, false));
        };
        let counted = QueueCounts {
            delayed: counts.buckets.iter().sum(),
            failed: counts.failed,
            ready: counts.ready,
            running,
            next_run_at: None,
        };
        Ok((counted, counts.paused))
    }

    pub(super) async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        let session = self.session().await?;
        Ok(self.counts_and_flag(&session, queue).await?.0)
    }

    /// Take the messages of `name` without acknowledging them, on a channel of its own:
    /// [`BROWSE_WINDOW`] `basic.get`s pipelined at a time, until the queue answers empty or
    /// `max` messages are taken. `None` when the queue does not exist. Close the channel to
    /// give them back (in their places).
    pub(super) async fn browse_at_most(
        &self,
        session: &Session,
        name: &str,
        max: usize,
    ) -> Result<Option<Browsed>> {
        let channel = self.fresh_channel(session).await?;
        let mut messages = Vec::new();
        while messages.len() < max {
            let want = (max - messages.len()).min(BROWSE_WINDOW);
            let gets = (0..want)
                .map(|_| channel.basic_get(name.into(), BasicGetOptions { no_ack: false }))
                .collect();
            let mut empty = false;
            let mut failure = None;
            for got in pipelined(gets).await {
                match got {
                    Ok(Some(message)) => {
                        messages.push((message.delivery.delivery_tag, message.delivery.data))
                    }
                    Ok(None) => empty = true,
                    // The first get's NOT_FOUND closes the channel: the others fail with it.
                    Err(e) if is_not_found(&e) && failure.is_none() => return Ok(None),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                Self::close(&channel).await;
                return Err(self.error(e));
            }
            if empty {
                break;
            }
        }
        Ok(Some((channel, messages)))
    }

    /// Delete the browsed messages `tags` (acknowledge them), then close `channel` (giving the
    /// others back) whatever happened.
    pub(super) async fn ack_and_close(
        &self,
        channel: &lapin::Channel,
        tags: impl IntoIterator<Item = lapin::types::DeliveryTag>,
    ) -> Result<()> {
        let deleted = async {
            for tag in tags {
                channel
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| self.error(e))?;
            }
            Ok(())
        }
        .await;
        Self::close(channel).await;
        deleted
    }

    /// Take every message of `name` (see [`browse_at_most`](Self::browse_at_most)).
    pub(super) async fn browse(&self, session: &Session, name: &str) -> Result<Option<Browsed>> {
        self.browse_at_most(session, name, usize::MAX).await
    }

    /// The queues of the registry (plus those this process used), deduplicating it.
    pub(super) async fn registry_queues(&self, session: &Session) -> Result<BTreeSet<String>> {
        let mut queues: BTreeSet<String> = lock(&self.registered).iter().cloned().collect();
        queues.extend(lock(&self.declared).iter().cloned());
        let Some((channel, messages)) = self.browse(session, &self.registry_name()).await? else {
            return Ok(queues);
        };
        let mut seen = HashSet::new();
        let mut result = Ok(());
        for (tag, data) in messages {
            let name = String::from_utf8(data).ok();
            let keep = match &name {
                Some(name) => validate_queue_name(name).is_ok() && seen.insert(name.clone()),
                None => false,
            };
            if keep {
                queues.extend(name);
            } else if result.is_ok() {
                // A duplicate (or garbage): compact the registry.
                result = channel
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| self.error(e));
            }
        }
        Self::close(&channel).await;
        result.map(|()| queues)
    }

    pub(super) async fn stats(&self) -> Result<Vec<QueueStats>> {
        let session = self.session().await?;
        let mut stats = Vec::new();
        for queue in self.registry_queues(&session).await? {
            let (counts, paused) = self.counts_and_flag(&session, &queue).await?;
            if counts.ready + counts.delayed + counts.running + counts.failed == 0 && !paused {
                continue;
            }
            stats.push(QueueStats {
                queue,
                pending: counts.ready + counts.delayed,
                delayed: counts.delayed,
                running: counts.running,
                failed: counts.failed,
                oldest_pending_ms: None,
                paused,
            });
        }
        Ok(stats)
    }

    /// A task as listed, from its message: `state` is where it was found. A failed task's
    /// `run_at` is the time it failed (kept in `run_at` since failures record it, else the end
    /// of its last attempt).
    pub(super) fn summary(body: Body, state: TaskState) -> TaskSummary {
        let run_at = match state {
            TaskState::Failed => body
                .history
                .last()
                .map_or(body.run_at_ms, |last| last.finished_at.max(body.run_at_ms)),
            _ => body.run_at_ms,
        };
        TaskSummary {
            id: body.id,
            queue: body.queue,
            state,
            payload: body.payload,
            attempts: body.attempts,
            errors: body.errors,
            crashes: body.crashes,
            last_error: body.last_error,
            history: body.history,
            created_at: from_epoch_ms(body.created_at_ms),
            run_at: Some(from_epoch_ms(run_at)),
            owner: None,
            result: None,
        }
    }

    pub(super) async fn queues_of(
        &self,
        session: &Session,
        queue: Option<&str>,
    ) -> Result<Vec<String>> {
        Ok(match queue {
            Some(queue) => vec![queue.to_string()],
            None => self.registry_queues(session).await?.into_iter().collect(),
        })
    }

    pub(super) async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        let session = self.session().await?;
        let mut summaries = Vec::new();
        for queue in self.queues_of(&session, queue).await? {
            let names = self.names(&queue)?;
            let Some((channel, messages)) = self.browse(&session, &names.failed).await? else {
                continue;
            };
            Self::close(&channel).await;
            summaries.extend(
                messages
                    .iter()
                    .filter_map(|(_, data)| serde_json::from_slice::<Body>(data).ok())
                    .map(|mut body| {
                        body.queue.clone_from(&queue);
                        Self::summary(body, TaskState::Failed)
                    }),
            );
        }
        summaries.sort_by_key(|summary| summary.id);
        Ok(summaries)
    }

    pub(super) async fn retry_failed(&self, selector: &Selector) -> Result<Vec<RetriedTask>> {
        let session = self.session().await?;
        let queue = match selector {
            Selector::Queue(queue) => Some(queue.as_str()),
            Selector::Ids(_) | Selector::All => None,
        };
        let mut moved = Vec::new();
        for queue in self.queues_of(&session, queue).await? {
            let names = self.names(&queue)?;
            let Some((channel, messages)) = self.browse(&session, &names.failed).await? else {
                continue;
            };
            let retried = async {
                let now = now_ms();
                for (tag, data) in messages {
                    let Ok(mut body) = serde_json::from_slice::<Body>(&data) else {
                        continue;
                    };
                    if matches!(selector, Selector::Ids(ids) if !ids.contains(&body.id)) {
                        continue;
                    }
                    body.queue.clone_from(&queue);
                    body.attempts = 0;
                    body.errors = 0;
                    body.crashes = 0;
                    body.run_at_ms = now;
                    self.publish_task(&session, &body).await?;
                    channel
                        .basic_ack(tag, BasicAckOptions::default())
                        .await
                        .map_err(|e| self.error(e))?;
                    moved.push(RetriedTask {
                        id: body.id,
                        queue: queue.clone(),
                    });
                }
                Ok::<_, TransportError>(())
            }
            .await;
            Self::close(&channel).await;
            retried?;
        }
        Ok(moved)
    }

    pub(super) async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        let names = self.names(queue)?;
        let session = self.session().await?;
        let known = lock(&self.declared).contains(queue);
        if !known && !self.exists(&session, &names.ready).await? {
            return Ok(0);
        }
        // It exists: make sure all of its queues do (a purge of a missing one would fail).
        self.ensure_topology(&session, queue).await?;
        let targets: Vec<&str> = match which {
            PurgeWhich::Failed => vec![&names.failed],
            PurgeWhich::Pending => std::iter::once(names.ready.as_str())
                .chain(names.buckets.iter().map(String::as_str))
                .collect(),
        };
        let channel = self.fresh_channel(&session).await?;
        let purges = targets
            .iter()
            .map(|name| channel.queue_purge((*name).into(), QueuePurgeOptions::default()))
            .collect();
        let results = join_all(purges).await;
        Self::close(&channel).await;
        let mut purged = 0;
        for result in results {
            purged += u64::from(result.map_err(|e| self.error(e))?);
        }
        Ok(purged)
    }

    pub(super) async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let session = self.session().await?;
        let Some((channel, messages)) = self.browse(&session, &self.fires_name(schedule)).await?
        else {
            return Ok(None);
        };
        Self::close(&channel).await;
        Ok(messages
            .iter()
            .filter_map(|(_, data)| std::str::from_utf8(data).ok()?.parse::<i64>().ok())
            .max()
            .map(from_epoch_ms))
    }

    pub(super) async fn delete_everything(&self) -> Result<()> {
        let session = self.session().await?;
        let queues = self.registry_queues(&session).await?;
        let mut doomed: Vec<String> = Vec::new();
        let mut exchanges: Vec<String> = Vec::new();
        for queue in &queues {
            let names = self.names(queue)?;
            exchanges.push(names.ready.clone());
            exchanges.push(names.wake);
            doomed.push(names.ready);
            doomed.push(names.failed);
            doomed.push(names.paused);
            doomed.extend(names.buckets);
        }
        doomed.push(self.registry_name());
        doomed.push(self.masters_name());
        doomed.push(self.followers_name());
        exchanges.push(self.events_name());
        doomed.extend(lock(&self.keys).drain());
        doomed.extend(lock(&self.fires).drain());
        doomed.extend(lock(&self.schedule_flags).drain());
        doomed.push(self.paused_schedules_name());
        let mut channel = self.fresh_channel(&session).await?;
        for name in &doomed {
            if channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .is_err()
            {
                channel = self.fresh_channel(&session).await?;
            }
        }
        for name in &exchanges {
            if channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .is_err()
            {
                channel = self.fresh_channel(&session).await?;
            }
        }
        Self::close(&channel).await;
        self.forget_declared();
        Ok(())
    }
}
