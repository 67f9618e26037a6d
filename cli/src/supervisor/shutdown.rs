//! Shutdown: warm (ask every child to finish its task and quit, within a grace period), then
//! cold (SIGKILL of every remaining child's process group; their tasks are released).

use std::time::Instant;

use super::Supervisor;
use super::slots::State;

impl Supervisor {
    pub(super) fn begin_shutdown(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.stop_scheduler();
        self.log
            .debug(format_args!("Termination received; shutting down children"));
        let grace = self.app.settings.shutdown_grace();
        self.stopping = Some(Instant::now() + grace);
        for slot in &mut self.slots {
            match &mut slot.state {
                State::Running(child) => child.quit(),
                State::Backoff(_) => slot.state = State::Done,
                State::Done => {}
            }
        }
    }

    /// Cold shutdown (or grace expiry): SIGKILL every remaining child's process group.
    pub(super) fn kill_all(&mut self, why: &str) {
        let mut n = 0;
        for slot in &mut self.slots {
            if let State::Running(child) = &mut slot.state {
                child.kill();
                child.killed_by_shutdown = true;
                n += 1;
            }
        }
        if n > 0 {
            self.killed_children = true;
            self.log.warn(format_args!(
                "Killing {n} worker{} ({why}); their tasks are released",
                if n == 1 { "" } else { "s" }
            ));
        }
    }
}
