//! Why a child died, as the master records it against the task it was running.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::ledger::ChildRef;
use super::restart;
use super::slots::{INNOCENT_REMEMBERED, LOST_REMEMBERED, State};
use super::{Supervisor, child::Child};
use crate::control::HaltReason;

/// The cause of a child's death. Its [`Display`](fmt::Display) form is the reason stored with
/// the task (`asynctask-failed` shows it) and logged by the master, so it must stay stable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeathCause {
    /// The process exited with this status (a plugin's `exit(1)`, an abort in the host).
    Exited(i32),
    /// A signal ended it (SIGKILL from the OOM killer or an operator, SIGSEGV...).
    Signaled(i32),
    /// The master killed it because its task ran past the queue's `timeout`.
    Timeout(Duration),
    /// The master killed it because an operator cancelled the task it was running.
    Cancelled,
    /// Its exit status could not be read: the process is gone without a trace.
    Lost,
    /// An exit status that carries neither a code nor a signal.
    Abnormal,
}

impl DeathCause {
    /// The cause behind an exit status as `wait()` returned it (`None`: it could not be read).
    pub fn from_status(status: Option<ExitStatus>) -> DeathCause {
        match status {
            None => DeathCause::Lost,
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => DeathCause::Exited(code),
                (None, Some(signal)) => DeathCause::Signaled(signal),
                _ => DeathCause::Abnormal,
            },
        }
    }
}

impl fmt::Display for DeathCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeathCause::Exited(code) => write!(f, "exited with status {code}"),
            DeathCause::Signaled(signal) => match Signal::try_from(*signal) {
                Ok(signal) => write!(f, "killed by {}", signal.as_str()),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
            DeathCause::Timeout(limit) => {
                write!(f, "timeout after {}", humantime::format_duration(*limit))
            }
            DeathCause::Cancelled => f.write_str(rex_transport::console::CANCELLED),
            DeathCause::Lost => f.write_str("vanished (its exit status could not be read)"),
            DeathCause::Abnormal => f.write_str("ended abnormally"),
        }
    }
}

/// Add `id` to a slot's list for its next children, forgetting the oldest beyond
/// [`INNOCENT_REMEMBERED`].
fn remember(ids: &mut std::collections::VecDeque<i64>, id: i64) {
    if ids.len() == INNOCENT_REMEMBERED {
        ids.pop_front();
    }
    ids.push_back(id);
}

/// The completions a child's beacon lists as not recorded yet.
fn completed_leases(beacon: &crate::beacon::Snapshot) -> Vec<rex_transport::Lease> {
    beacon
        .completed
        .iter()
        .map(|&(id, token)| rex_transport::Lease { id, token })
        .collect()
}

impl Supervisor {
    /// A child ended. Its tasks are handed to the ledger to settle (the loop does not wait for
    /// that) and its slot is relaunched, held back, or closed.
    pub(super) fn on_exit(&mut self, index: usize, cause: DeathCause) {
        let State::Running(child) = std::mem::replace(&mut self.slots[index].state, State::Done)
        else {
            return;
        };
        let finished = child.finished();
        self.slots[index].processed += finished;
        // Its last tally, read from the beacon it left.
        let now = std::time::SystemTime::now();
        let grown = child.counters().since(&self.slots[index].counted);
        self.slots[index].counted = Default::default();
        self.throughput
            .add(&self.slots[index].config.queue, &grown, now);
        let queue = self.slots[index].config.queue.clone();
        if child.killed_by_shutdown {
            // Killed after the grace period: its tasks go back untouched for another worker,
            // except those its beacon lists as completed.
            let completed = completed_leases(&child.snapshot());
            self.ledger
                .release_all(child.owner.clone(), completed, "worker killed at shutdown");
            return;
        }
        if child.halted.is_some() && child.kill_reason.is_none() {
            self.on_orderly_exit(index, &child);
            return;
        }
        // The beacon says which task was running; a timeout kill names the task it was for,
        // which may have ended before the signal landed (then no task is to blame).
        let beacon = child.snapshot();
        let running = beacon.running;
        let (charged, reason) = match (&child.kill_reason, running) {
            (Some((cause, lease)), Some(r)) if (r.task, r.token) == *lease => {
                (Some(r), cause.to_string())
            }
            (Some((cause, _)), _) => (None, cause.to_string()),
            (None, r) => (r, cause.to_string()),
        };
        let policies = self.policies();
        let dead = ChildRef {
            slot: index,
            generation: child.generation,
        };
        let charged_lease = charged.map(|r| rex_transport::Lease {
            id: r.task,
            token: r.token,
        });
        // A cancelled attempt is not the task's fault: kept as failed, never retried.
        let cancelled = matches!(child.kill_reason, Some((DeathCause::Cancelled, _)));
        let kind = if cancelled {
            rex_transport::FailureKind::Cancelled
        } else {
            rex_transport::FailureKind::Crash
        };
        if charged.is_some() {
            let ended = if cancelled {
                rex_transport::Counters {
                    failed: 1,
                    ..Default::default()
                }
            } else {
                rex_transport::Counters {
                    crashed: 1,
                    ..Default::default()
                }
            };
            self.throughput.add(&queue, &ended, now);
        }
        let completed = completed_leases(&beacon);
        self.ledger.settle_crash(
            dead,
            child.owner.clone(),
            charged_lease,
            completed,
            rex_transport::Failure {
                kind,
                reason: reason.clone(),
            },
            policies,
        );
        if self.transport.leases_held_by_broker() {
            // The broker hands out everything the child held again: say which task caused
            // the death and which ones merely were in its window.
            let slot = &mut self.slots[index];
            if let Some(r) = charged {
                if slot.lost.len() == LOST_REMEMBERED {
                    slot.lost.pop_front();
                }
                slot.lost.push_back((r.task, reason.clone()));
            }
            let charged_id = charged.map(|r| r.task);
            let completed: Vec<i64> = beacon.completed.iter().map(|&(id, _)| id).collect();
            for &id in &completed {
                remember(&mut slot.completed, id);
            }
            let claimed = child.claimed_ids().into_iter();
            for id in claimed.filter(|id| Some(*id) != charged_id && !completed.contains(id)) {
                remember(&mut slot.innocent, id);
            }
        }
        if self.stopping.is_some() || self.slots[index].retiring {
            self.log.error(format_args!(
                "Worker for queue {queue} died during shutdown ({reason})"
            ));
            return;
        }
        self.log
            .error(format_args!("Worker for queue {queue} died; restarting..."));
        self.slots[index].deaths += 1;
        let task_note = match charged {
            Some(r) => format!(" while processing task {}", r.task),
            None => String::new(),
        };
        self.log.debug(format_args!(
            "Worker for queue {queue} (pid {}) {reason}{task_note}",
            child.pid
        ));
        // A child that held a task, or ran long enough to be called healthy, resets the count.
        let made_progress =
            running.is_some() || finished > 0 || child.started.elapsed() >= restart::HEALTHY_UPTIME;
        let delay = self.slots[index].restarts.on_death(made_progress);
        if delay.is_zero() {
            self.launch(index);
        } else {
            self.log.warn(format_args!(
                "Worker for queue {queue} keeps dying without processing anything ({} times in a row); next start in {:.1}s",
                self.slots[index].restarts.failures(),
                delay.as_secs_f64()
            ));
            self.slots[index].state = State::Backoff(std::time::Instant::now() + delay);
        }
    }

    /// The ledger settled a dead child's tasks. If it held one the master had not heard of,
    /// the death followed progress after all: a held-back relaunch happens now.
    pub(super) fn on_settled(&mut self, dead: ChildRef, tasks: usize) {
        let Some(slot) = self.slots.get_mut(dead.slot) else {
            return;
        };
        if tasks == 0 || slot.retiring || self.stopping.is_some() {
            return;
        }
        slot.restarts.progress_found();
        if let State::Backoff(_) = slot.state {
            slot.state = State::Backoff(std::time::Instant::now());
        }
    }

    /// A child that stopped in order: done, or (stopped on its own) relaunched.
    fn on_orderly_exit(&mut self, index: usize, child: &Child) {
        let reason = child.halted.unwrap_or(HaltReason::Quit);
        let done = self.stopping.is_some()
            || self.slots[index].retiring
            || (self.options.halt_when_empty && reason == HaltReason::Empty);
        if !done {
            // Stopped on its own (e.g. SIGTERM sent to the child directly): keep the queue worked.
            self.log.info(format_args!(
                "Worker for queue {} stopped; restarting...",
                self.slots[index].config.queue
            ));
            self.launch(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_read_as_the_reasons_operators_see() {
        let status = |raw| Some(ExitStatus::from_raw(raw));
        assert_eq!(
            DeathCause::from_status(status(1 << 8)),
            DeathCause::Exited(1)
        );
        assert_eq!(DeathCause::from_status(status(9)), DeathCause::Signaled(9));
        assert_eq!(DeathCause::from_status(None), DeathCause::Lost);
        let shown: Vec<String> = [
            DeathCause::Exited(1),
            DeathCause::Signaled(9),
            DeathCause::Signaled(11),
            DeathCause::Signaled(200),
            DeathCause::Timeout(Duration::from_millis(1500)),
            DeathCause::Lost,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            shown,
            [
                "exited with status 1",
                "killed by SIGKILL",
                "killed by SIGSEGV",
                "killed by signal 200",
                "timeout after 1s 500ms",
                "vanished (its exit status could not be read)",
            ]
        );
    }
}
