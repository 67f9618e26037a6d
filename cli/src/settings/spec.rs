//! The declared settings: name, owning package, type, merge rule, default and doc line.

use std::time::Duration;

use serde_json::{Map, Value};

use super::Context;
use crate::error::{Error, Result};

/// How values from several sources combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The later value wins.
    Replace,
    /// Shallow map update: later keys override; `null` values are kept (they disable entries).
    MapUpdate,
    /// Lists are concatenated.
    Concat,
}

impl Merge {
    pub fn apply(self, old: Value, new: Value) -> Value {
        match (self, old, new) {
            (Merge::MapUpdate, Value::Object(mut old), Value::Object(new)) => {
                old.extend(new);
                Value::Object(old)
            }
            (Merge::Concat, Value::Array(mut old), Value::Array(new)) => {
                old.extend(new);
                Value::Array(old)
            }
            // Mismatched shapes: the newer value stands and validation reports it.
            (_, _, new) => new,
        }
    }
}

/// Setting types. Each knows how to coerce a command-line string and validate a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OptionalString,
    /// Integer within bounds (inclusive).
    Integer {
        min: i64,
        max: i64,
    },
    /// `500ms`, `30s`, `5m`, `1h`; a bare number means seconds.
    Duration(Range),
    /// DEBUG, INFO, WARNING, ERROR.
    LogLevel,
    /// Map logger name -> level.
    LogLevels,
    /// basic, timestamp, json.
    LogFormat,
    /// The `asynctask_workers` map.
    Workers,
    /// The `asynctask_scheduled_workers` list.
    Schedules,
}

#[derive(Debug)]
pub struct SettingSpec {
    pub name: &'static str,
    pub package: &'static str,
    pub kind: Kind,
    pub merge: Merge,
    /// Default as YAML text.
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every setting rex declares, grouped by package.
pub static SPECS: &[SettingSpec] = &[
    SettingSpec {
        name: "log_level",
        package: "rex.ctl",
        kind: Kind::LogLevel,
        merge: Merge::Replace,
        default: "INFO",
        doc: "Lowest level of log records printed: DEBUG, INFO, WARNING or ERROR.",
    },
    SettingSpec {
        name: "log_levels",
        package: "rex.ctl",
        kind: Kind::LogLevels,
        merge: Merge::MapUpdate,
        default: "{}",
        doc: "Per-logger levels overriding log_level, such as {FooWorker: DEBUG}. Merged across sources.",
    },
    SettingSpec {
        name: "log_format",
        package: "rex.ctl",
        kind: Kind::LogFormat,
        merge: Merge::Replace,
        default: "basic",
        doc: "Log record format: basic (LEVEL:Logger:message), timestamp (ISO time first) or json (one object per line).",
    },
    SettingSpec {
        name: "asynctask_transport",
        package: "rex.asynctask",
        kind: Kind::OptionalString,
        merge: Merge::Replace,
        default: "null",
        doc: "URI of the transport holding the tasks. Schemes: sqlite:PATH (the default); postgresql:// (also postgres://, pgsql://, pgsql:DB; TLS with ?sslmode=verify-full); redis:// (TLS: rediss://; a socket: redis+unix://); amqp:// (TLS: amqps://); memory: (inside one process only). Unset: an SQLite file at .rex/asynctask.db next to the nearest rex.yaml, or in the current directory when there is none. URI forms and options: docs/transports.md.",
    },
    SettingSpec {
        name: "asynctask_workers",
        package: "rex.asynctask",
        kind: Kind::Workers,
        merge: Merge::MapUpdate,
        default: "{}",
        doc: "Map of queue name to worker name, or to a record {worker, concurrency, prefetch, max_attempts, max_crashes, retry_delay_min, retry_delay_max, timeout, rate_max_calls, rate_period}. Merged across sources; null disables a queue.",
    },
    SettingSpec {
        name: "asynctask_scheduled_workers",
        package: "rex.asynctask",
        kind: Kind::Schedules,
        merge: Merge::Concat,
        default: "[]",
        doc: "List of schedules {worker | ctl, year, month, day, week, day_of_week, hour, minute, second | cron, start_date, end_date, timezone, misfire, overlap, timeout}; any number of --scheduler processes sharing the transport and these entries enqueue each fire once. Concatenated across sources.",
    },
    SettingSpec {
        name: "asynctask_workers_poll_interval",
        package: "rex.asynctask",
        kind: Kind::Integer {
            min: 1,
            max: 3_600_000,
        },
        merge: Merge::Replace,
        default: "500",
        doc: "Milliseconds an idle worker waits before looking at its queue again.",
    },
    SettingSpec {
        name: "asynctask_workers_check_child_interval",
        package: "rex.asynctask",
        kind: Kind::Integer {
            min: 1,
            max: 3_600_000,
        },
        merge: Merge::Replace,
        default: "1000",
        doc: "Milliseconds between the master's housekeeping passes (lease reclaim); child deaths are detected at once regardless.",
    },
    SettingSpec {
        name: "asynctask_workers_shutdown_grace",
        package: "rex.asynctask",
        kind: Kind::Duration(Range::secs(0, DAY)),
        merge: Merge::Replace,
        default: "30s",
        doc: "On SIGTERM/SIGINT, how long children may take to finish their current task before they are killed and the task is released.",
    },
    SettingSpec {
        name: "asynctask_lease_duration",
        package: "rex.asynctask",
        kind: Kind::Duration(Range::secs(1, 7 * DAY)),
        merge: Merge::Replace,
        default: "60s",
        doc: "How long a claimed task stays leased without a heartbeat from its master before another master may reclaim it (1s to 7d; masters renew leases every third of it).",
    },
    SettingSpec {
        name: "asynctask_max_payload_size",
        package: "rex.asynctask",
        kind: Kind::Integer {
            min: 2,
            max: 64 * 1024 * 1024,
        },
        merge: Merge::Replace,
        default: "1048576",
        doc: "Largest payload accepted, in bytes of compact JSON (2 to 67108864), checked by asynctask-submit and for the tasks a worker submits; payloads may also nest at most 64 levels.",
    },
    SettingSpec {
        name: "asynctask_completed_retention",
        package: "rex.asynctask",
        kind: Kind::Duration(Range::secs(0, 365 * DAY)),
        merge: Merge::Replace,
        default: "24h",
        doc: "How long a completed task is kept, with its result and attempts, for asynctask-show and the console (0s to 365d; 0s: pruned at the next upkeep). Masters prune every 10 seconds; RabbitMQ keeps no completed task.",
    },
    SettingSpec {
        name: "asynctask_completed_kept",
        package: "rex.asynctask",
        kind: Kind::Integer {
            min: 0,
            max: 100_000_000,
        },
        merge: Merge::Replace,
        default: "10000",
        doc: "The most completed tasks kept per queue (0 to 100000000): the newest stay, older ones are pruned before their retention ends.",
    },
];

impl SettingSpec {
    pub fn default_value(&self) -> Value {
        serde_yaml::from_str(self.default).unwrap_or(Value::Null)
    }
}

fn got(value: &Value) -> String {
    value.to_string()
}

impl Kind {
    /// Coerce a value as written in a source; strings from the command line become structured
    /// values for structured kinds.
    pub fn coerce(self, value: Value) -> Result<Value> {
        match (self, value) {
            (Kind::OptionalString | Kind::LogLevel | Kind::LogFormat | Kind::Duration(_), v) => {
                Ok(v)
            }
            (Kind::Integer { .. }, Value::String(s)) => match s.trim().parse::<i64>() {
                Ok(n) => Ok(Value::from(n)),
                Err(_) => {
                    Err(Error::new("Expected an integer").context("Got:", got(&Value::String(s))))
                }
            },
            (Kind::Workers | Kind::LogLevels, Value::String(s)) => {
                match serde_yaml::from_str::<Value>(&s) {
                    Ok(v @ (Value::Object(_) | Value::Null)) => Ok(v),
                    Ok(_) => {
                        Err(Error::new("Expected a mapping")
                            .context("Got:", got(&Value::String(s))))
                    }
                    Err(e) => Err(Error::with_body(
                        "Failed to parse a YAML or JSON mapping:",
                        e.to_string(),
                    )
                    .context("Got:", got(&Value::String(s)))),
                }
            }
            (Kind::Schedules, Value::String(s)) => match serde_yaml::from_str::<Value>(&s) {
                Ok(v @ (Value::Array(_) | Value::Null)) => Ok(v),
                Ok(_) => {
                    Err(Error::new("Expected a sequence").context("Got:", got(&Value::String(s))))
                }
                Err(e) => Err(Error::with_body(
                    "Failed to parse a YAML or JSON sequence:",
                    e.to_string(),
                )
                .context("Got:", got(&Value::String(s)))),
            },
            (_, v) => Ok(v),
        }
    }

    /// Check `value` and normalise it; the asynctask kinds also yield their typed form, built
    /// in the same pass.
    pub fn validate(self, value: Value, ctx: &Context<'_>) -> Result<(Value, Typed)> {
        let plain = match self {
            Kind::Workers => {
                return super::asynctask::validate_workers(value, ctx)
                    .map(|(value, queues)| (value, Typed::Queues(queues)));
            }
            Kind::Schedules => {
                return super::schedules::validate(value, ctx)
                    .map(|(value, entries)| (value, Typed::Schedules(entries)));
            }
            Kind::OptionalString => match value {
                Value::Null | Value::String(_) => Ok(value),
                other => Err(Error::new("Expected a string").context("Got:", got(&other))),
            },
            Kind::Integer { min, max } => match value.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Value::from(n)),
                _ => Err(
                    Error::new(format!("Expected an integer from {min} to {max}"))
                        .context("Got:", got(&value)),
                ),
            },
            Kind::Duration(range) => {
                range.check(&value)?;
                Ok(value)
            }
            Kind::LogLevel => validate_level(value),
            Kind::LogLevels => match value {
                Value::Null => Ok(Value::Object(Map::new())),
                Value::Object(map) => {
                    let mut out = Map::new();
                    for (logger, level) in map {
                        let level = validate_level(level).map_err(|e| {
                            e.context("While validating mapping value for key:", logger.clone())
                        })?;
                        out.insert(logger, level);
                    }
                    Ok(Value::Object(out))
                }
                other => Err(Error::new("Expected a mapping").context("Got:", got(&other))),
            },
            Kind::LogFormat => match value.as_str() {
                Some("basic" | "timestamp" | "json") => Ok(value),
                _ => Err(
                    Error::with_body("Expected one of:", "basic, timestamp, json")
                        .context("Got:", got(&value)),
                ),
            },
        };
        plain.map(|value| (value, Typed::Plain))
    }
}

/// What a setting's kind parses its value into besides the normalised value.
pub enum Typed {
    Plain,
    Queues(Vec<super::QueueConfig>),
    Schedules(Vec<super::Entry>),
}

fn validate_level(value: Value) -> Result<Value> {
    match value.as_str().and_then(crate::logging::Level::parse) {
        Some(level) => Ok(Value::String(level.name().to_string())),
        None => Err(
            Error::with_body("Expected one of:", "DEBUG, INFO, WARNING, ERROR")
                .context("Got:", got(&value)),
        ),
    }
}

/// Seconds in a day, for ranges.
pub const DAY: u64 = 24 * 3600;

/// The longest duration any setting or option takes (ten years): beyond it, times computed
/// from now would leave the range every transport stores.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * DAY);

/// The accepted span of a duration setting, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub min: Duration,
    pub max: Duration,
}

impl Range {
    pub const fn secs(min: u64, max: u64) -> Range {
        Range {
            min: Duration::from_secs(min),
            max: Duration::from_secs(max),
        }
    }

    /// From one millisecond (a duration that must not be zero) up to `max` seconds.
    pub const fn positive(max: u64) -> Range {
        Range {
            min: Duration::from_millis(1),
            max: Duration::from_secs(max),
        }
    }

    /// Parse `value` and check it lies within the range.
    pub fn check(&self, value: &Value) -> Result<Duration> {
        let d = parse_duration_value(value)?;
        if d < self.min || d > self.max {
            return Err(Error::new(format!(
                "Expected a duration from {} to {}",
                show_duration(self.min),
                show_duration(self.max)
            ))
            .context("Got:", got(value)));
        }
        Ok(d)
    }
}

/// `0s`, `1ms`, `30s`, `24h`, `7d`: the largest unit that divides the duration exactly.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= per && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    if ms == 0 {
        "0s".into()
    } else {
        format!("{ms}ms")
    }
}

/// `500ms`, `30s`, `5m`, `1h 30m`; a bare number (or numeric string) means seconds. At most
/// [`MAX_DURATION`]: a larger value is an error, never a wrapped or saturated time.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let shown = Value::String(text.to_string());
    match text.parse::<f64>() {
        Ok(secs) => from_secs(secs, &shown),
        Err(_) => match humantime::parse_duration(text) {
            Ok(d) => within_max(d, &shown),
            Err(_) => Err(Error::new("Expected a duration such as 500ms, 30s or 5m")
                .context("Got:", got(&shown))),
        },
    }
}

/// A number of seconds as a duration: negative or not a number is an error, and so is one
/// too large to represent (reported as above the maximum).
fn from_secs(secs: f64, value: &Value) -> Result<Duration> {
    // NaN is not a duration either.
    if secs.is_nan() || secs < 0.0 {
        return Err(Error::new("Expected a non-negative duration").context("Got:", got(value)));
    }
    within_max(
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX),
        value,
    )
}

fn within_max(d: Duration, value: &Value) -> Result<Duration> {
    if d > MAX_DURATION {
        return Err(Error::new(format!(
            "Expected a duration of at most {}",
            show_duration(MAX_DURATION)
        ))
        .context("Got:", got(value)));
    }
    Ok(d)
}

pub fn parse_duration_value(value: &Value) -> Result<Duration> {
    match value {
        Value::String(s) => parse_duration(s),
        Value::Number(n) => from_secs(n.as_f64().unwrap_or(f64::NAN), value),
        other => {
            Err(Error::new("Expected a duration such as 500ms, 30s or 5m")
                .context("Got:", got(other)))
        }
    }
}
