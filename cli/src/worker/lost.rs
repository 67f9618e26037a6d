//! A task handed back *lost* (RabbitMQ, whose broker holds the leases): its worker died, and
//! the broker returned it with everything else that worker had claimed. What the dead child's
//! master saw decides what it was (see [`Consumer::settle_lost`]).

use rex_transport::{Failure, Task};

use super::Consumer;

/// The crash reason of a lost attempt whose end nobody here saw.
const LOST_WORKER: &str =
    "worker lost: the broker returned its task (the process died or lost its connection)";

impl Consumer {
    /// On a transport whose broker holds the leases (RabbitMQ), nobody can settle the task of
    /// a worker that died: the broker hands it out again, marked [`Task::lost`], with every
    /// other task that worker had claimed. Only the master that saw the death knows which one
    /// was running, and it passed that down:
    ///
    /// * the task that was running: its lost attempt is settled here as the master settles a
    ///   dead child's task elsewhere, a crash with the master's reason, retried or failed by
    ///   the queue's policy;
    /// * a task that it had completed (without submits) but not recorded: recorded now as
    ///   completed, not run again (as a master records them elsewhere);
    /// * a task that was claimed but not running: run now, uncharged (`true`);
    /// * a task nobody here saw (another host's worker held it, or its master died too): given
    ///   back once without a charge, counted in the task; lost unwitnessed again, it is
    ///   charged a crash, so a task that kills its workers where nobody sees it is still
    ///   quarantined after `max_crashes`.
    pub(super) fn settle_lost(&self, task: &Task) -> bool {
        let witnessed = self
            .lost_reasons
            .iter()
            .find(|(id, _)| *id == task.id)
            .map(|(_, reason)| reason.as_str());
        if witnessed.is_none() && self.lost_completed.contains(&task.id) {
            let lease = task.lease();
            match self.retrying(|| self.transport.complete(&lease, &[])) {
                Ok(_) => self.logger.info(format_args!(
                    "Task {} on queue {} was completed by a worker that died before recording it; recorded now",
                    task.id, task.queue
                )),
                Err(e) => self.logger.error(format_args!(
                    "Cannot record task {}, completed by a worker that died: {e}",
                    task.id
                )),
            }
            return false;
        }
        if witnessed.is_none() && self.lost_innocent.contains(&task.id) {
            return true;
        }
        if witnessed.is_none() && task.unwitnessed_returns == 0 {
            let lease = task.lease();
            let given_back = self.retrying(|| {
                self.transport
                    .release(&lease, "its worker was lost, and nobody here saw why")
            });
            match given_back {
                Ok(_) => self.logger.info(format_args!(
                    "Task {} on queue {} came back from a worker lost elsewhere; given back once without a charge",
                    task.id, task.queue
                )),
                Err(e) => self.logger.error(format_args!(
                    "Cannot give back task {}, whose worker was lost: {e}",
                    task.id
                )),
            }
            return false;
        }
        let reason = witnessed.unwrap_or(LOST_WORKER);
        let retry_at = self.retry.retry_at(task, rex_transport::FailureKind::Crash);
        let (lease, failure) = (task.lease(), Failure::crash(reason));
        match self.retrying(|| self.transport.fail(&lease, &failure, retry_at)) {
            Ok(true) if retry_at.is_some() => self.logger.info(format_args!(
                "Task {} on queue {} will be retried ({reason})",
                task.id, task.queue
            )),
            Ok(_) => {}
            Err(e) => self.logger.error(format_args!(
                "Cannot settle task {}, whose worker was lost: {e}",
                task.id
            )),
        }
        false
    }
}
