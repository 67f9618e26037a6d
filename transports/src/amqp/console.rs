//! The console's view of tasks: looking one up, listing and counting them by filter, purging
//! selected failed tasks. RabbitMQ cannot be queried: a message can only be read by taking it
//! (see `Inner::browse` in `operator.rs`: taken unacknowledged, given back in place when the
//! channel closes), so these read the queues a filter needs and apply
//! [`TaskFilter::matches`] to what they find.
//!
//! * Pending tasks are messages of the ready queue (`ready`; a task back early from a delay
//!   queue waits there too, `delayed` by its `run_at`) and of the delay queues (`delayed`).
//!   A listing takes at most [`MAX_BROWSE`] messages of each of these queues, and gives them
//!   back at once: claims meanwhile skip the messages it holds (for as long as it takes to
//!   read them), and a delayed task moves on that much later. Beyond that many messages a
//!   queue is not read any further: a listing shows what was read, and a count by text or
//!   time refuses (`Unsupported`) rather than answer short.
//! * Failed tasks are the messages of the failed queue, read whole (as `failed` does: no claim
//!   reads that queue); their `run_at` is the time they failed.
//! * Running tasks are unacknowledged deliveries, held by the connection of the worker that
//!   claimed them: nobody else can read them. Only the calling process's own claims are seen
//!   (as by `owned_by` and `counts`), so an operator's process sees none, and a lookup of a
//!   task running elsewhere finds nothing (`None`).
//! * A count without text or times is made of the queues' message counts (exact, and nothing
//!   is read); with them, it reads like a listing.
//! * Tasks are deduplicated by id (a task moving between two queues may be read twice).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use lapin::options::BasicAckOptions;

use super::session::Session;
use super::{Body, Inner};
use crate::console::{ListState, MAX_PAGE, TaskFilter};
use crate::task::now_ms;
use crate::{Result, TaskId, TaskState, TaskSummary, TransportError, validate_queue_name};

/// Messages a listing, count or lookup takes at most from the ready queue and from each delay
/// queue of a task queue (the queues that claims read).
pub(super) const MAX_BROWSE: usize = 10_000;

/// Which of a task queue's objects a filter's state needs.
#[derive(Clone, Copy)]
struct Wanted {
    delayed: bool,
    ready: bool,
    failed: bool,
    running: bool,
}

impl Wanted {
    fn of(state: Option<ListState>) -> Self {
        let only = Wanted {
            delayed: false,
            ready: false,
            failed: false,
            running: false,
        };
        match state {
            None => Wanted {
                delayed: true,
                ready: true,
                failed: true,
                running: true,
            },
            Some(ListState::Ready) => Wanted {
                ready: true,
                ..only
            },
            // Tasks back early from a delay queue wait in the ready queue.
            Some(ListState::Delayed) => Wanted {
                delayed: true,
                ready: true,
                ..only
            },
            Some(ListState::Running) => Wanted {
                running: true,
                ..only
            },
            Some(ListState::Failed) => Wanted {
                failed: true,
                ..only
            },
            // Completed messages are acknowledged: none is kept.
            Some(ListState::Done) => only,
        }
    }
}

/// What reading a task queue found.
#[derive(Default)]
struct Found {
    tasks: Vec<TaskSummary>,
    /// A queue held more than [`MAX_BROWSE`] messages: some were not read.
    truncated: bool,
}

/// Picks the tasks a reader keeps.
type Keep<'a> = &'a (dyn Fn(&TaskSummary) -> bool + Sync);

impl Inner {
    /// `filter`, its queue name checked.
    pub(super) fn checked(&self, filter: &TaskFilter) -> Result<TaskFilter> {
        if let Some(queue) = &filter.queue {
            validate_queue_name(queue)?;
            self.names(queue)?;
        }
        Ok(filter.clone())
    }

    /// The tasks of `queue` kept in the objects `wanted` names that `keep` keeps: the delay
    /// queues first, so that a task moving on to the ready queue meanwhile is seen (possibly
    /// twice), then the ready queue, then the failed queue. Empty objects are not read.
    async fn read_queue(
        &self,
        session: &Session,
        queue: &str,
        wanted: Wanted,
        keep: Keep<'_>,
    ) -> Result<Found> {
        let mut found = Found::default();
        let Some(counts) = self.object_counts(session, queue).await? else {
            return Ok(found); // never used
        };
        let names = self.names(queue)?;
        let mut objects: Vec<(&str, TaskState, usize)> = Vec::new();
        if wanted.delayed {
            let buckets = names.buckets.iter().zip(&counts.buckets);
            let pending = buckets.filter(|(_, count)| **count > 0);
            objects
                .extend(pending.map(|(name, _)| (name.as_str(), TaskState::Pending, MAX_BROWSE)));
        }
        if wanted.ready && counts.ready > 0 {
            objects.push((&names.ready, TaskState::Pending, MAX_BROWSE));
        }
        if wanted.failed && counts.failed > 0 {
            objects.push((&names.failed, TaskState::Failed, usize::MAX));
        }
        for (name, state, max) in objects {
            let Some((channel, messages)) = self.browse_at_most(session, name, max).await? else {
                continue;
            };
            // Given back at once: claims skip them while they are held.
            Self::close(&channel).await;
            found.truncated |= messages.len() >= max;
            for (_, data) in messages {
                // Foreign messages (moved to the failed queue by a claim) are not tasks.
                let Ok(mut body) = serde_json::from_slice::<Body>(&data) else {
                    continue;
                };
                queue.clone_into(&mut body.queue);
                let task = Self::summary(body, state);
                if keep(&task) {
                    found.tasks.push(task);
                }
            }
        }
        Ok(found)
    }

    /// The tasks `filter`'s queue and state hold that `keep` keeps: this process's claims,
    /// then what reading the queues finds.
    async fn matching(&self, filter: &TaskFilter, keep: Keep<'_>) -> Result<Found> {
        let wanted = Wanted::of(filter.state);
        let mut found = Found::default();
        if wanted.running {
            found
                .tasks
                .extend(self.held_summaries().into_iter().filter(keep));
        }
        if !(wanted.ready || wanted.delayed || wanted.failed) {
            return Ok(found);
        }
        let session = self.session().await?;
        for queue in self.queues_of(&session, filter.queue.as_deref()).await? {
            let read = self.read_queue(&session, &queue, wanted, keep).await?;
            found.tasks.extend(read.tasks);
            found.truncated |= read.truncated;
        }
        Ok(found)
    }

    pub(super) async fn task(self: Arc<Self>, id: TaskId) -> Result<Option<TaskSummary>> {
        let keep = |task: &TaskSummary| task.id == id;
        if let Some(task) = self.held_summaries().into_iter().find(keep) {
            return Ok(Some(task));
        }
        let session = self.session().await?;
        let everything = Wanted::of(None);
        for queue in self.registry_queues(&session).await? {
            let found = self.read_queue(&session, &queue, everything, &keep).await?;
            if let Some(task) = found.tasks.into_iter().next() {
                return Ok(Some(task));
            }
        }
        Ok(None)
    }

    pub(super) async fn list(
        self: Arc<Self>,
        filter: TaskFilter,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        let limit = limit.min(MAX_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let keep =
            |task: &TaskSummary| after.is_none_or(|a| task.id > a) && filter.matches(task, now);
        let found = self.matching(&filter, &keep).await?;
        let mut page = BTreeMap::new();
        for task in found.tasks {
            page.entry(task.id).or_insert(task);
        }
        Ok(page.into_values().take(limit).collect())
    }

    pub(super) async fn count(self: Arc<Self>, filter: TaskFilter) -> Result<u64> {
        if filter.text.is_none() && filter.since.is_none() && filter.until.is_none() {
            return self.count_from_counts(&filter).await;
        }
        let now = now_ms();
        let keep = |task: &TaskSummary| filter.matches(task, now);
        let found = self.matching(&filter, &keep).await?;
        if found.truncated {
            return Err(TransportError::Unsupported(format!(
                "{}: cannot count tasks by text or time here: RabbitMQ cannot search its queues, \
                 a message can only be read by taking it, and a queue holds more than the \
                 {MAX_BROWSE} pending tasks read at most; counts by queue and state alone are \
                 exact",
                self.display
            )));
        }
        let ids: HashSet<TaskId> = found.tasks.iter().map(|task| task.id).collect();
        Ok(ids.len() as u64)
    }

    /// A count by queue and state: the queues' message counts (running: this process's
    /// claims).
    async fn count_from_counts(&self, filter: &TaskFilter) -> Result<u64> {
        let session = self.session().await?;
        let mut total = 0;
        for queue in self.queues_of(&session, filter.queue.as_deref()).await? {
            let (counts, _) = self.counts_and_flag(&session, &queue).await?;
            total += match filter.state {
                None => counts.ready + counts.delayed + counts.running + counts.failed,
                Some(ListState::Ready) => counts.ready,
                Some(ListState::Delayed) => counts.delayed,
                Some(ListState::Running) => counts.running,
                Some(ListState::Failed) => counts.failed,
                Some(ListState::Done) => 0,
            };
        }
        Ok(total)
    }

    /// Take the failed queues' messages of the given ids and acknowledge them (the other
    /// messages go back in place).
    pub(super) async fn purge_failed(self: Arc<Self>, ids: Vec<TaskId>) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: HashSet<TaskId> = ids.into_iter().collect();
        let session = self.session().await?;
        let mut purged = 0;
        for queue in self.registry_queues(&session).await? {
            let names = self.names(&queue)?;
            let Some((channel, messages)) = self.browse(&session, &names.failed).await? else {
                continue;
            };
            let acked = async {
                for (tag, data) in messages {
                    let Ok(body) = serde_json::from_slice::<Body>(&data) else {
                        continue;
                    };
                    if ids.contains(&body.id) {
                        channel
                            .basic_ack(tag, BasicAckOptions::default())
                            .await
                            .map_err(|e| self.error(e))?;
                        purged += 1;
                    }
                }
                Ok::<_, TransportError>(())
            }
            .await;
            Self::close(&channel).await;
            acked?;
        }
        Ok(purged)
    }
}
