//! Log records in Python logging's `LEVEL:Logger:message` shape, on stderr.
//!
//! Every record goes through `tracing` with a `logger` field (the original's logger names:
//! `AsyncTaskWorkerTask`, `FooWorker`...); [`RexLayer`] filters it by the per-logger level and
//! writes it with a single `write` so lines from the master and its children never interleave
//! mid-line on a shared stderr. Records from library crates without a `logger` field use their
//! `tracing` target as the logger name.
//!
//! Code logs through [`Logger`], which checks the level *before* formatting, so disabled DEBUG
//! records cost one comparison in the worker's hot loop.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Python logging levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_uppercase().as_str() {
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warning),
            "ERROR" | "CRITICAL" => Some(Level::Error),
            _ => None,
        }
    }

    /// From the plugin ABI's numeric levels (Python numbers; anything else rounds down).
    pub fn from_number(n: u32) -> Level {
        match n {
            0..=14 => Level::Debug,
            15..=24 => Level::Info,
            25..=34 => Level::Warning,
            _ => Level::Error,
        }
    }

    fn from_tracing(level: &tracing::Level) -> Level {
        match *level {
            tracing::Level::TRACE | tracing::Level::DEBUG => Level::Debug,
            tracing::Level::INFO => Level::Info,
            tracing::Level::WARN => Level::Warning,
            tracing::Level::ERROR => Level::Error,
        }
    }
}

/// How records are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `INFO:FooWorker:Starting; queue=foo` (the original's format).
    #[default]
    Basic,
    /// `2026-11-23T07:00:00.123Z INFO:FooWorker:Starting; queue=foo`.
    Timestamp,
    /// One JSON object per line: ts, level, logger, message, pid, queue, task_id.
    Json,
}

/// Everything that decides what is printed; passed from the master to its children.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub level: Level,
    #[serde(default)]
    pub levels: BTreeMap<String, Level>,
    #[serde(default)]
    pub format: Format,
    /// `--quiet`: no records at all.
    #[serde(default)]
    pub quiet: bool,
    /// Queue of this process (children), shown in JSON records.
    #[serde(default)]
    pub queue: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: Level::Info,
            levels: BTreeMap::new(),
            format: Format::Basic,
            quiet: false,
            queue: None,
        }
    }
}

impl LogConfig {
    fn enabled(&self, logger: &str, level: Level) -> bool {
        !self.quiet && level >= self.levels.get(logger).copied().unwrap_or(self.level)
    }

    /// The lowest level any logger prints (plugins use it to skip formatting).
    pub fn min_level(&self) -> Level {
        self.levels
            .values()
            .copied()
            .chain([self.level])
            .min()
            .unwrap_or(Level::Info)
    }
}

static CONFIG: OnceLock<RwLock<LogConfig>> = OnceLock::new();
/// The task being processed by this (child) process, for JSON records; 0 = none.
static CURRENT_TASK: AtomicI64 = AtomicI64::new(0);

fn config() -> &'static RwLock<LogConfig> {
    CONFIG.get_or_init(|| RwLock::new(LogConfig::default()))
}

/// Install the subscriber (once per process) and set the configuration.
pub fn init(cfg: LogConfig) {
    configure(cfg);
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(RexLayer);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Replace the configuration (e.g. once settings are known, or on reload).
pub fn configure(cfg: LogConfig) {
    *config().write().unwrap_or_else(|e| e.into_inner()) = cfg;
}

pub fn current_config() -> LogConfig {
    config().read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub fn set_current_task(id: Option<i64>) {
    CURRENT_TASK.store(id.unwrap_or(0), Ordering::Relaxed);
}

/// Whether a record of `level` under `logger` would be printed.
pub fn enabled(logger: &str, level: Level) -> bool {
    config()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .enabled(logger, level)
}

/// A named logger, as in Python's `logging.getLogger(name)`.
#[derive(Clone, Debug)]
pub struct Logger {
    name: String,
}

impl Logger {
    pub fn new(name: impl Into<String>) -> Self {
        Logger { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        if !enabled(&self.name, level) {
            return;
        }
        let logger = self.name.as_str();
        match level {
            Level::Debug => tracing::debug!(logger, "{}", args),
            Level::Info => tracing::info!(logger, "{}", args),
            Level::Warning => tracing::warn!(logger, "{}", args),
            Level::Error => tracing::error!(logger, "{}", args),
        }
    }

    pub fn debug(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Debug, args)
    }
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Info, args)
    }
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Warning, args)
    }
    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Error, args)
    }
}

/// The `tracing` layer that renders and writes records.
pub struct RexLayer;

#[derive(Default)]
struct Fields {
    logger: Option<String>,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "logger" => self.logger = Some(value.to_string()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.message, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "logger" => self.logger = Some(format!("{value:?}")),
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.message, " {name}={value:?}");
            }
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for RexLayer {
    // Decided once per call site, so that a library's records are never even built.
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.fields().field("logger").is_some() {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        meta.fields().field("logger").is_some()
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = Level::from_tracing(meta.level());
        let mut fields = Fields::default();
        event.record(&mut fields);
        // Records of libraries (the broker clients...) carry no `logger`. They are not the
        // project's: their debug chatter is noise, and their errors reach rex as `Result`s that
        // rex reports itself, in context (a broker client logs even the expected `NOT_FOUND` of
        // a passive declare as an error).
        let Some(logger) = fields.logger.as_deref() else {
            return;
        };
        let cfg = config().read().unwrap_or_else(|e| e.into_inner());
        if !cfg.enabled(logger, level) {
            return;
        }
        let line = render(&cfg, level, logger, &fields.message);
        drop(cfg);
        // One write per record: lines from several processes sharing stderr stay whole.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn render(cfg: &LogConfig, level: Level, logger: &str, message: &str) -> String {
    match cfg.format {
        Format::Basic => format!("{}:{}:{}\n", level.name(), logger, message),
        Format::Timestamp => format!(
            "{} {}:{}:{}\n",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            level.name(),
            logger,
            message
        ),
        Format::Json => {
            let task = CURRENT_TASK.load(Ordering::Relaxed);
            let mut record = serde_json::json!({
                "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                "level": level.name(),
                "logger": logger,
                "message": message,
                "pid": std::process::id(),
            });
            if let Some(queue) = &cfg.queue {
                record["queue"] = queue.clone().into();
            }
            if task != 0 {
                record["task_id"] = task.into();
            }
            format!("{record}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_format_is_python_logging() {
        let cfg = LogConfig::default();
        assert_eq!(
            render(&cfg, Level::Warning, "FooWorker", "hi"),
            "WARNING:FooWorker:hi\n"
        );
    }

    #[test]
    fn per_logger_levels_override_the_default() {
        let mut cfg = LogConfig::default();
        cfg.levels.insert("FooWorker".into(), Level::Debug);
        assert!(cfg.enabled("FooWorker", Level::Debug));
        assert!(!cfg.enabled("BarWorker", Level::Debug));
        assert_eq!(cfg.min_level(), Level::Debug);
        cfg.quiet = true;
        assert!(!cfg.enabled("FooWorker", Level::Error));
    }

    #[test]
    fn json_records_carry_queue_and_level() {
        let cfg = LogConfig {
            format: Format::Json,
            queue: Some("foo".into()),
            ..LogConfig::default()
        };
        let line = render(&cfg, Level::Info, "FooWorker", "Starting; queue=foo");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["queue"], "foo");
        assert_eq!(v["message"], "Starting; queue=foo");
    }
}
