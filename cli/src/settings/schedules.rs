//! `asynctask_scheduled_workers`: validating the setting into typed schedule [`Entry`]s (the
//! `--scheduler` producer in `crate::scheduler` only reads them).
//!
//! [`Entry`] is one validated entry: its target (a worker, or a `rex` command run by
//! `ctl_executor`), its compiled [`CronSchedule`], its queue and its stable id.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

use super::spec::{DAY, Range};
use super::{Context, QueueConfig, parse_duration};
use crate::cron::{self, CronSchedule, FIELDS, Zone};
use crate::error::{Error, Result};
use crate::package::CTL_EXECUTOR;

const OTHER_FIELDS: [&str; 9] = [
    "worker",
    "ctl",
    "cron",
    "start_date",
    "end_date",
    "timezone",
    "misfire",
    "overlap",
    "timeout",
];

/// What to do about fires missed while no scheduler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misfire {
    /// Forget them (default).
    Skip,
    /// Run once at start-up if at least one was missed.
    RunOnce,
}

/// What to do when a fire comes while the previous one is still queued or running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    Allow,
    SkipIfRunning,
}

/// One validated schedule entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The worker, or `None` for a `ctl` entry.
    pub worker: Option<String>,
    pub ctl: Option<String>,
    /// The schedule as written (the given cron fields, or `cron`), for logs.
    pub description: Value,
    pub schedule: CronSchedule,
    pub misfire: Misfire,
    pub overlap: Overlap,
    pub timeout: Option<Duration>,
    /// 8 hex digits of a stable hash of the entry as written.
    pub id: String,
}

impl Entry {
    /// `demo_bar_worker` or the ctl command: the name in `Scheduling "<name>"`.
    pub fn name(&self) -> &str {
        self.worker.as_deref().or(self.ctl.as_deref()).unwrap_or("")
    }

    /// The worker that consumes the entry's queue.
    pub fn consumer(&self) -> &str {
        self.worker.as_deref().unwrap_or(CTL_EXECUTOR)
    }

    /// `scheduled_0_<worker>` or `scheduled_0_ctl_<id>`.
    pub fn queue(&self) -> String {
        match &self.worker {
            Some(worker) => format!("scheduled_0_{worker}"),
            None => format!("scheduled_0_ctl_{}", self.id),
        }
    }

    pub fn payload(&self) -> Map<String, Value> {
        match &self.ctl {
            Some(command) => json!({ "command": command })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            None => Map::new(),
        }
    }

    /// The consumer queue's configuration.
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            timeout: self.timeout,
            ..QueueConfig::with_defaults(self.queue(), self.consumer())
        }
    }
}

/// Validate the setting, a list of entries each checked with `While validating sequence item
/// #N` context, in one pass: the normalised value (for plugins and `rex settings`) and the
/// typed entries.
pub(super) fn validate(value: Value, ctx: &Context<'_>) -> Result<(Value, Vec<Entry>)> {
    let items = match value {
        Value::Null => return Ok((Value::Array(Vec::new()), Vec::new())),
        Value::Array(items) => items,
        other => return Err(Error::new("Expected a sequence").context("Got:", other.to_string())),
    };
    let mut out = Vec::with_capacity(items.len());
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let (item, entry) = validate_item(item, ctx)
            .map_err(|e| e.context("While validating sequence item", format!("#{}", i + 1)))?;
        out.push(item);
        entries.push(entry);
    }
    Ok((Value::Array(out), entries))
}

fn validate_item(item: Value, ctx: &Context<'_>) -> Result<(Value, Entry)> {
    let Value::Object(mut record) = item else {
        return Err(Error::new("Expected a mapping").context("Got:", item.to_string()));
    };
    for key in record.keys() {
        if !FIELDS.contains(&key.as_str()) && !OTHER_FIELDS.contains(&key.as_str()) {
            return Err(Error::with_body("Got unexpected field:", key.clone()));
        }
    }
    // Fields given as null are absent.
    record.retain(|_, v| !v.is_null());
    let field = |name: &'static str| move |e: Error| e.context("While validating field:", name);
    let truthy = |v: Option<&Value>| {
        v.is_some_and(|v| !matches!(v, Value::Bool(false)) && v.as_str() != Some(""))
    };
    if truthy(record.get("worker")) == truthy(record.get("ctl")) {
        return Err(Error::new("Must specify one of 'worker' or 'ctl'"));
    }
    if let Some(worker) = record.get("worker") {
        let Some(worker) = worker.as_str() else {
            return Err(Error::new("Expected a string").context("Got:", worker.to_string()))
                .map_err(field("worker"));
        };
        super::validate_worker_name(worker, ctx).map_err(field("worker"))?;
    }
    if let Some(ctl) = record.get("ctl")
        && !ctl.is_string()
    {
        return Err(Error::new("Expected a string").context("Got:", ctl.to_string()))
            .map_err(field("ctl"));
    }
    for name in FIELDS {
        if let Some(v) = record.get_mut(name) {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_string(),
                other => {
                    return Err(Error::new("Expected an integer or a string")
                        .context("Got:", other.to_string()))
                    .map_err(field(name));
                }
            };
            cron::expand(name, &text)
                .map_err(|e| Error::new(e).context("Got:", v.to_string()))
                .map_err(field(name))?;
            // A numeric string is the number, as in the original.
            if let Ok(n) = text.parse::<u64>() {
                *v = Value::from(n);
            }
        }
    }
    let has_fields = FIELDS.iter().any(|f| record.contains_key(*f));
    match (has_fields, record.get("cron")) {
        (false, None) => return Err(Error::new("Must specify some property of the schedule")),
        (true, Some(_)) => {
            return Err(Error::new(
                "Use either cron or the schedule fields (second, minute, ...), not both",
            ));
        }
        (false, Some(Value::String(_))) | (true, None) => {}
        (false, Some(other)) => {
            return Err(Error::new("Expected a string").context("Got:", other.to_string()))
                .map_err(field("cron"));
        }
    }
    for (name, allowed) in [
        ("misfire", &["skip", "run_once"][..]),
        ("overlap", &["allow", "skip_if_running"][..]),
    ] {
        if let Some(v) = record.get(name)
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            return Err(Error::with_body("Expected one of:", allowed.join(", "))
                .context("Got:", v.to_string()))
            .map_err(field(name));
        }
    }
    if let Some(v) = record.get("timeout") {
        Range::positive(7 * DAY)
            .check(v)
            .map_err(field("timeout"))?;
    }
    for name in ["start_date", "end_date"] {
        if let Some(v) = record.get(name) {
            parse_date(v).map_err(field(name))?;
        }
    }
    // Compiles the schedule: catches what per-field checks cannot (bad zone, bad cron text).
    let value = Value::Object(record);
    let entry = entry(&value)?;
    // An impossible date (30 February) would be accepted and never fire, silently.
    if entry.schedule.never_matches() {
        return Err(
            Error::new("The schedule matches no date at all, such as 30 February")
                .context("Got:", entry.description.to_string()),
        );
    }
    Ok((value, entry))
}

/// ISO 8601 date or date-time; without an offset it is UTC (as in the original).
fn parse_date(v: &Value) -> Result<DateTime<Utc>> {
    let bad = || {
        Error::new("Expected a date (2026-01-31) or a date and time (2026-01-31T08:00:00, optionally with Z or +01:00)").context("Got:", v.to_string())
    };
    let text = v.as_str().ok_or_else(bad)?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(bad)
}

/// Build an [`Entry`] from a validated record.
fn entry(value: &Value) -> Result<Entry> {
    let record = value.as_object().cloned().unwrap_or_default();
    let text = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_string);
    let zone = Zone::parse(text("timezone").as_deref())
        .map_err(|e| Error::new(e).context("While validating field:", "timezone"))?;
    let given: Vec<(&str, String)> = FIELDS
        .iter()
        .filter_map(|f| {
            record.get(*f).map(|v| {
                (
                    *f,
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
        })
        .collect();
    let (schedule, description) = match text("cron") {
        Some(expr) => (
            CronSchedule::from_cron(&expr, zone),
            json!({ "cron": expr }),
        ),
        None => {
            let description: Map<String, Value> = FIELDS
                .iter()
                .filter_map(|f| record.get(*f).map(|v| (f.to_string(), v.clone())))
                .collect();
            (
                CronSchedule::from_fields(&given, zone),
                Value::Object(description),
            )
        }
    };
    let schedule = schedule.map_err(Error::new)?;
    let date = |name: &str| record.get(name).map(parse_date).transpose();
    let schedule = schedule.with_bounds(date("start_date")?, date("end_date")?);
    Ok(Entry {
        worker: text("worker"),
        ctl: text("ctl"),
        description,
        schedule,
        misfire: if text("misfire").as_deref() == Some("run_once") {
            Misfire::RunOnce
        } else {
            Misfire::Skip
        },
        overlap: if text("overlap").as_deref() == Some("skip_if_running") {
            Overlap::SkipIfRunning
        } else {
            Overlap::Allow
        },
        timeout: record.get("timeout").and_then(|v| {
            v.as_str()
                .and_then(|s| parse_duration(s).ok())
                .or_else(|| v.as_u64().map(Duration::from_secs))
        }),
        id: stable_id(value),
    })
}

/// FNV-1a over the entry's canonical JSON (keys sorted): the same entry gets the same id on
/// every host and release, which the per-fire idempotency keys rely on.
fn stable_id(value: &Value) -> String {
    let hash = rex_transport::hash::fnv1a64(value.to_string().as_bytes());
    format!("{:08x}", hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers() -> Vec<String> {
        vec!["demo_bar_worker".into()]
    }

    fn check(value: Value) -> std::result::Result<(Value, Vec<Entry>), String> {
        let workers = workers();
        validate(value, &Context { workers: &workers }).map_err(|e| e.render())
    }

    #[test]
    fn validation_errors_name_the_item() {
        assert_eq!(
            check(json!([{"worker": "demo_bar_worker", "second": 5}, {"second": 1}])).unwrap_err(),
            "Must specify one of 'worker' or 'ctl'\nWhile validating sequence item\n    #2"
        );
        assert_eq!(
            check(json!([{"ctl": "demo-noisy-task"}])).unwrap_err(),
            "Must specify some property of the schedule\nWhile validating sequence item\n    #1"
        );
        assert_eq!(
            check(json!([{"worker": "demo_bar_worker", "ctl": "x", "second": 1}])).unwrap_err(),
            "Must specify one of 'worker' or 'ctl'\nWhile validating sequence item\n    #1"
        );
        assert!(check(json!([{"worker": "demo_bar_worker", "hour": 24}])).unwrap_err().starts_with("hour value 24 is out of range 0-23\nGot:\n    24\nWhile validating field:\n    hour"));
        assert!(
            check(json!([{"worker": "demo_bar_worker", "second": 0}])).is_ok(),
            "zero is a schedule property"
        );
        assert!(check(json!([{"worker": "demo_bar_worker", "cron": "*/5 * * * *", "timezone": "Europe/Paris"}])).is_ok());
    }

    #[test]
    fn queues_and_ids_are_stable() {
        let given = json!([{"ctl": "demo-noisy-task", "second": "*/5"}, {"worker": "demo_bar_worker", "second": "5"}]);
        let (_, entries) = check(given.clone()).unwrap();
        assert_eq!(
            entries[0].queue(),
            format!("scheduled_0_ctl_{}", entries[0].id)
        );
        assert_eq!(entries[0].id.len(), 8);
        assert_eq!(
            entries[0].payload(),
            json!({"command": "demo-noisy-task"})
                .as_object()
                .cloned()
                .unwrap()
        );
        assert_eq!(entries[1].queue(), "scheduled_0_demo_bar_worker");
        assert_eq!(entries[1].description, json!({"second": 5}));
        let (_, again) = check(given).unwrap();
        assert_eq!(again[0].id, entries[0].id);
        assert_ne!(entries[0].id, entries[1].id);
    }
}
