//! `rex asynctask-masters`: the live `asynctask-workers` masters and their children, as each
//! master publishes them every few seconds (its heartbeat, `crate::supervisor::heartbeat`).

use std::time::{Duration, SystemTime};

use rex_transport::{ChildRecord, MasterRecord};

use super::operator::{app, print_table};
use super::show::rfc3339;
use crate::cli::Parsed;
use crate::error::Result;
use crate::runtime::current_thread;

pub fn masters(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let transport = app.open_shared_transport()?;
    let now = SystemTime::now();
    let mut masters = current_thread()?.block_on(transport.masters())?;
    // A backend may keep a record a little past its expiry.
    masters.retain(|m| m.is_live(now));
    if parsed.flag("json") {
        println!(
            "{}",
            serde_json::to_string(&masters).unwrap_or_else(|_| "[]".into())
        );
        return Ok(0);
    }
    if masters.is_empty() {
        println!("No live masters.");
        return Ok(0);
    }
    for (i, master) in masters.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", headline(master, now));
        let rows: Vec<[String; 7]> = master.children.iter().map(|c| row(c, now)).collect();
        print_table(
            [
                "QUEUE",
                "SLOT",
                "PID",
                "TASK",
                "PROCESSED",
                "RESTARTS",
                "RSS",
            ],
            &rows,
        );
    }
    Ok(0)
}

/// `Master host:pid:start (pid 12, rex 0.1.0, scheduler), up since ..., last beat 0.4s ago`.
fn headline(master: &MasterRecord, now: SystemTime) -> String {
    let ago = now.duration_since(master.beat_at).unwrap_or_default();
    format!(
        "Master {} (host {}, pid {}, rex {}{}), started {}, last beat {} ago",
        master.id,
        master.host,
        master.pid,
        master.version,
        if master.scheduler { ", scheduler" } else { "" },
        rfc3339(master.started_at),
        seconds(ago)
    )
}

fn row(child: &ChildRecord, now: SystemTime) -> [String; 7] {
    let dash = || "-".to_string();
    let task = match (child.task, child.task_since) {
        (Some(id), Some(since)) => {
            format!(
                "{id} ({})",
                seconds(now.duration_since(since).unwrap_or_default())
            )
        }
        (Some(id), None) => id.to_string(),
        (None, _) => dash(),
    };
    [
        child.queue.clone(),
        child.slot.to_string(),
        child.pid.map_or_else(dash, |pid| pid.to_string()),
        task,
        child.processed.to_string(),
        child.restarts.to_string(),
        child.rss_bytes.map_or_else(dash, |bytes| {
            format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
        }),
    ]
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_row_says_what_it_runs_and_for_how_long() {
        let now = SystemTime::now();
        let child = ChildRecord {
            queue: "slow".into(),
            slot: 1,
            pid: Some(42),
            task: Some(7),
            task_since: Some(now - Duration::from_millis(1500)),
            processed: 3,
            restarts: 1,
            rss_bytes: Some(3 * 1024 * 1024),
        };
        assert_eq!(
            row(&child, now),
            ["slow", "1", "42", "7 (1.5s)", "3", "1", "3.0 MiB"].map(String::from)
        );
        let waiting = ChildRecord {
            pid: None,
            ..ChildRecord::default()
        };
        assert_eq!(row(&waiting, now)[2..4], ["-".to_string(), "-".to_string()]);
    }
}
