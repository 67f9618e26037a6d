//! Settings: declared by packages, merged from every source, validated once.
//!
//! Sources are merged in this order (later wins, per the setting's merge rule): each package's
//! `settings.yaml` (dependencies first, the project last), `rex.yaml` `parameters`,
//! `REX_PARAMETERS`, then each `--set` in command-line order. Values given as strings on the
//! command line are coerced by the setting's type (structured settings parse them as YAML,
//! which includes JSON). Validation errors carry the rex.ctl context paragraphs.

mod asynctask;
mod schedules;
mod spec;

pub(crate) use asynctask::validate_worker_name;
pub use asynctask::{DEFAULT_PREFETCH, QueueConfig, RateLimit, RetryPolicy};
pub use schedules::{Entry, Misfire, Overlap};
pub use spec::{Kind, Merge, SPECS, SettingSpec, Typed, parse_duration, parse_duration_value};

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::logging::{self, LogConfig};

/// One source of setting values, with a description used in error messages.
#[derive(Clone, Debug)]
pub struct Source {
    pub origin: String,
    pub values: serde_json::Map<String, Value>,
    /// Parameters (rex.yaml, env, --set) are listed in the `With parameters:` error paragraph.
    pub is_parameter: bool,
}

/// Validated, normalised settings of one application: the values (as plugins and `rex
/// settings` see them) and, parsed once with them, the typed asynctask configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    values: BTreeMap<String, Value>,
    queues: Vec<QueueConfig>,
    schedules: Vec<Entry>,
    tuning: Tuning,
}

/// The asynctask durations and limits, read from their (validated, defaulted) settings.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    poll_interval: Duration,
    check_child_interval: Duration,
    shutdown_grace: Duration,
    lease_duration: Duration,
    max_payload_size: usize,
    completed_for: Duration,
    completed_kept: u64,
}

/// What validation needs to know about the application.
pub struct Context<'a> {
    /// Every worker name the application provides, in registration order.
    pub workers: &'a [String],
}

impl Settings {
    /// Merge `sources` over the defaults of `specs` and validate the result.
    pub fn build(
        specs: &[&SettingSpec],
        sources: &[Source],
        ctx: &Context<'_>,
    ) -> Result<Settings> {
        let mut raw: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for source in sources {
            for (name, value) in &source.values {
                let Some(spec) = specs.iter().find(|s| s.name == name) else {
                    return Err(Error::with_body("Got unknown setting:", name.clone())
                        .context("In", source.origin.clone()));
                };
                let value = spec
                    .kind
                    .coerce(value.clone())
                    .map_err(|e| e.context("While validating setting:", name.clone()))?;
                raw.entry(spec.name).or_default().push(value);
            }
        }
        let mut values = BTreeMap::new();
        let (mut queues, mut schedules) = (Vec::new(), Vec::new());
        for spec in specs {
            let merged = match raw.remove(spec.name) {
                Some(list) => list
                    .into_iter()
                    .reduce(|old, new| spec.merge.apply(old, new))
                    .unwrap_or(Value::Null),
                None => spec.default_value(),
            };
            let in_context = |e: Error| e.context("While validating setting:", spec.name);
            let (valid, typed) = spec.kind.validate(merged, ctx).map_err(in_context)?;
            match typed {
                Typed::Plain => {}
                Typed::Queues(typed) => queues = typed,
                Typed::Schedules(typed) => schedules = typed,
            }
            values.insert(spec.name.to_string(), valid);
        }
        let tuning = Tuning::read(&values)?;
        Ok(Settings {
            values,
            queues,
            schedules,
            tuning,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn all(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    /// `asynctask_transport`, if set.
    pub fn transport_uri(&self) -> Option<&str> {
        self.get("asynctask_transport").and_then(Value::as_str)
    }

    pub fn poll_interval(&self) -> Duration {
        self.tuning.poll_interval
    }

    pub fn check_child_interval(&self) -> Duration {
        self.tuning.check_child_interval
    }

    pub fn shutdown_grace(&self) -> Duration {
        self.tuning.shutdown_grace
    }

    pub fn lease_duration(&self) -> Duration {
        self.tuning.lease_duration
    }

    /// `asynctask_completed_retention` and `asynctask_completed_kept`: how long completed
    /// tasks are kept, and how many per queue at most.
    pub fn completed_retention(&self) -> (Duration, u64) {
        (self.tuning.completed_for, self.tuning.completed_kept)
    }

    /// `asynctask_max_payload_size`: the most bytes of compact JSON a payload may take.
    pub fn max_payload_size(&self) -> usize {
        self.tuning.max_payload_size
    }

    /// The entries of `asynctask_scheduled_workers`, in order.
    pub fn schedules(&self) -> &[Entry] {
        &self.schedules
    }

    /// The configured queues (disabled ones skipped), sorted by queue name.
    pub fn queues(&self) -> &[QueueConfig] {
        &self.queues
    }

    pub fn log_config(&self) -> LogConfig {
        let level = self
            .get("log_level")
            .and_then(Value::as_str)
            .and_then(logging::Level::parse)
            .unwrap_or(logging::Level::Info);
        let levels = self
            .get("log_levels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), logging::Level::parse(v.as_str()?)?)))
                    .collect()
            })
            .unwrap_or_default();
        let format = self
            .get("log_format")
            .and_then(Value::as_str)
            .and_then(|f| serde_json::from_value(Value::String(f.to_string())).ok())
            .unwrap_or_default();
        LogConfig {
            level,
            levels,
            format,
            quiet: false,
            queue: None,
        }
    }

    /// The settings as YAML, sorted by name, with transport passwords masked.
    pub fn to_yaml(&self) -> String {
        let mut shown = self.values.clone();
        if let Some(Value::String(uri)) = shown.get_mut("asynctask_transport") {
            *uri = rex_transport::redact_uri(uri);
        }
        let shown: serde_yaml::Mapping = shown
            .iter()
            .map(|(k, v)| (serde_yaml::Value::from(k.as_str()), yaml_value(v)))
            .collect();
        serde_yaml::to_string(&shown).unwrap_or_default()
    }

    /// The settings as JSON (sent to plugins at init).
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

impl Tuning {
    /// From the validated values; an application without `rex.asynctask` has none of these
    /// settings and gets their declared defaults (`spec.rs` is the one place defaults live).
    fn read(values: &BTreeMap<String, Value>) -> Result<Tuning> {
        let get = |name: &str| -> Result<Value> {
            match values.get(name) {
                Some(value) => Ok(value.clone()),
                None => SPECS
                    .iter()
                    .find(|spec| spec.name == name)
                    .map(SettingSpec::default_value)
                    .ok_or_else(|| Error::with_body("Missing setting:", name)),
            }
        };
        let millis = |name: &str| -> Result<Duration> {
            let value = get(name)?;
            value.as_u64().map(Duration::from_millis).ok_or_else(|| {
                Error::new("Expected an integer")
                    .context("Got:", value.to_string())
                    .context("While validating setting:", name)
            })
        };
        let duration = |name: &str| -> Result<Duration> {
            spec::parse_duration_value(&get(name)?)
                .map_err(|e| e.context("While validating setting:", name))
        };
        let max_payload_size = get("asynctask_max_payload_size")?
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                Error::new("Expected an integer")
                    .context("While validating setting:", "asynctask_max_payload_size")
            })?;
        let completed_kept = get("asynctask_completed_kept")?.as_u64().ok_or_else(|| {
            Error::new("Expected an integer")
                .context("While validating setting:", "asynctask_completed_kept")
        })?;
        Ok(Tuning {
            completed_for: duration("asynctask_completed_retention")?,
            completed_kept,
            max_payload_size,
            poll_interval: millis("asynctask_workers_poll_interval")?,
            check_child_interval: millis("asynctask_workers_check_child_interval")?,
            shutdown_grace: duration("asynctask_workers_shutdown_grace")?,
            lease_duration: duration("asynctask_lease_duration")?,
        })
    }
}

/// A JSON value as YAML. Converted by hand: serde_json keeps numbers exact (as text), which
/// only its own serializer writes as numbers.
fn yaml_value(value: &Value) -> serde_yaml::Value {
    use serde_yaml::Value as Yaml;
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Yaml::from(u),
            (_, Some(i), _) => Yaml::from(i),
            (_, _, Some(f)) if f.is_finite() => Yaml::from(f),
            _ => Yaml::String(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Sequence(items.iter().map(yaml_value).collect()),
        Value::Object(map) => Yaml::Mapping(
            map.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), yaml_value(v)))
                .collect(),
        ),
    }
}

/// Parse a `--set PARAM=VALUE` argument: `PARAM` normalised (`-` → `_`), `VALUE` kept as a
/// string (coerced later by the setting's type); `--set PARAM` alone means `true`.
pub fn parse_set_arg(arg: &str) -> Result<(String, Value)> {
    let (name, value) = match arg.split_once('=') {
        Some((name, value)) => (name, Value::String(value.to_string())),
        None => (arg, Value::Bool(true)),
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(
            Error::with_body("invalid value for option --set:", "Expected PARAM=VALUE")
                .context("Got:", arg),
        );
    }
    Ok((name.replace('-', "_"), value))
}

/// A parameter's value as `With parameters:` shows it: JSON, except that a string holding
/// double quotes (JSON or YAML given with `--set`) is shown as typed, between single quotes as
/// in the shell, rather than with every quote escaped (`"{\"foo\": 1}"`). Strings a single-quoted
/// form could not show faithfully (holding `'`, `\` or control characters) stay JSON.
fn show_parameter(value: &Value) -> String {
    match value {
        Value::String(s)
            if s.contains('"') && !s.chars().any(|c| c == '\'' || c == '\\' || c.is_control()) =>
        {
            format!("'{s}'")
        }
        _ => value.to_string(),
    }
}

/// Render values for the `With parameters:` error paragraph.
pub fn describe_parameters(sources: &[Source]) -> Option<String> {
    let mut params: BTreeMap<&str, String> = BTreeMap::new();
    for source in sources.iter().filter(|s| s.is_parameter) {
        for (k, v) in &source.values {
            let shown = match (k.as_str(), v) {
                ("asynctask_transport", Value::String(uri)) => {
                    show_parameter(&Value::String(rex_transport::redact_uri(uri)))
                }
                _ => show_parameter(v),
            };
            params.insert(k, shown);
        }
    }
    if params.is_empty() {
        return None;
    }
    Some(
        params
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[cfg(test)]
mod tests;
