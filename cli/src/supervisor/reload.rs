//! SIGHUP: re-read the settings and restart only the children whose queue changed.

use std::collections::HashMap;

use super::Supervisor;
use super::slots::{State, all_queues};
use crate::logging;
use crate::project::{App, Requirement};
use crate::settings::QueueConfig;

impl Supervisor {
    /// SIGHUP: rebuild the application and restart only the children whose queue changed.
    pub(super) fn reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.log
            .info(format_args!("Reload requested; re-reading settings"));
        let app = match App::build(
            &self.args,
            Requirement {
                package: "rex.asynctask",
                fallback: None,
            },
        ) {
            Ok(app) => app,
            Err(e) => {
                self.log.error(format_args!(
                    "Reload failed; keeping the current settings:\n{}",
                    e.render()
                ));
                return;
            }
        };
        let new_queues = all_queues(&app.settings);
        let old_app = std::mem::replace(&mut self.app, app);
        let mut log = self.app.settings.log_config();
        log.quiet = self.options.quiet;
        logging::configure(log);
        let mut kept: HashMap<String, usize> = HashMap::new();
        for slot in &mut self.slots {
            let unchanged = new_queues.contains(&slot.config);
            if unchanged {
                *kept.entry(slot.config.queue.clone()).or_default() += 1;
            } else if !slot.retiring {
                slot.retiring = true;
                match &mut slot.state {
                    State::Running(child) => child.quit(),
                    _ => slot.state = State::Done,
                }
            }
        }
        let added: Vec<QueueConfig> = new_queues
            .into_iter()
            .filter(|q| !kept.contains_key(&q.queue))
            .collect();
        match self.slots_for(added) {
            Ok(new_slots) => {
                let start = self.slots.len();
                self.slots.extend(new_slots);
                for i in start..self.slots.len() {
                    self.launch(i);
                }
                if self.scheduler.is_some() {
                    // New schedules: restart the producer (fires stay deduplicated by key).
                    self.stop_scheduler();
                    self.start_scheduler();
                }
            }
            Err(e) => {
                self.log
                    .error(format_args!("Reload failed: {}", e.render()));
                self.app = old_app;
            }
        }
    }
}
