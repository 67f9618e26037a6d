//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`, run with cargo-fuzz) and of the
//! replay of their corpora in the normal test suite (`cli/tests/fuzz_corpora.rs`). Each takes
//! arbitrary bytes and must return without panicking, whatever they hold; where the input is
//! accepted, it also checks what must hold of the result (a payload round-trips).

use serde_json::Value;

use crate::settings::{Context, SPECS, Settings, Source, parse_set_arg};

/// A fuzz target: feeds arbitrary bytes to one parser.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("settings", settings),
    ("payload", payload),
    ("uri", uri),
    ("schedule", schedule),
    ("plugin_response", plugin_response),
];

/// The workers a fuzzed configuration may name.
const WORKERS: [&str; 3] = ["ctl_executor", "demo_foo_worker", "demo_bar_worker"];

/// `rex.yaml` parameters (YAML), then a NUL byte, then one `--set` argument per line.
pub fn settings(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (yaml, sets) = text.split_once('\0').unwrap_or((&text, ""));
    let mut sources = Vec::new();
    if let Ok(Value::Object(values)) = serde_yaml::from_str::<Value>(yaml) {
        sources.push(Source {
            origin: "rex.yaml".into(),
            values,
            is_parameter: true,
        });
    }
    for arg in sets.lines() {
        if let Ok((name, value)) = parse_set_arg(arg) {
            let mut values = serde_json::Map::new();
            values.insert(name, value);
            sources.push(Source {
                origin: "--set".into(),
                values,
                is_parameter: true,
            });
        }
    }
    let specs: Vec<_> = SPECS.iter().collect();
    let workers: Vec<String> = WORKERS.map(String::from).to_vec();
    let built = Settings::build(&specs, &sources, &Context { workers: &workers });
    match built {
        Ok(settings) => {
            let _ = settings.to_yaml();
            for entry in settings.schedules() {
                let _ = entry.schedule.next_after(chrono::Utc::now());
            }
        }
        Err(e) => {
            let _ = e.render();
        }
    }
}

/// One payload as `asynctask-submit` reads it: accepted ones come back exactly.
pub fn payload(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::tasks::operator::parse_payload(text, 1 << 20) {
        Ok(payload) => {
            let written = Value::Object(payload).to_string();
            let again = crate::tasks::operator::parse_payload(&written, 1 << 20)
                .map(|p| Value::Object(p).to_string());
            assert_eq!(again.ok().as_deref(), Some(written.as_str()));
        }
        Err(e) => {
            let _ = e.render();
        }
    }
}

/// A transport URI, parsed as `asynctask_transport` is (nothing is opened), and shown redacted.
pub fn uri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = rex_transport::check_uri(&text).map_err(|e| e.to_string());
    let _ = rex_transport::redact_uri(&text);
}

/// A schedule rule: a cron expression after `cron:`, or APScheduler fields `name=value`
/// separated by `;`. Compiled, then its next fire times computed.
pub fn schedule(data: &[u8]) {
    use crate::cron::{CronSchedule, Zone};
    let text = String::from_utf8_lossy(data);
    let compiled = match text.strip_prefix("cron:") {
        Some(expr) => CronSchedule::from_cron(expr, Zone::Named(chrono_tz::Tz::UTC)),
        None => {
            let fields: Vec<(&str, String)> = text
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .filter_map(|(name, value)| {
                    crate::cron::FIELDS
                        .iter()
                        .find(|f| **f == name.trim())
                        .map(|f| (*f, value.to_string()))
                })
                .collect();
            CronSchedule::from_fields(&fields, Zone::Named(chrono_tz::Tz::UTC))
        }
    };
    if let Ok(schedule) = compiled {
        let _ = schedule.never_matches();
        let mut at = chrono::DateTime::UNIX_EPOCH;
        for _ in 0..3 {
            match schedule.next_after(at) {
                Some(next) => {
                    assert!(next > at, "fire times must move forward");
                    at = next;
                }
                None => break,
            }
        }
    }
}

/// What a plugin hands back from a worker call: a status byte, then the response body. The
/// host decodes it as it decodes a real call's, down to the submits it would record.
pub fn plugin_response(data: &[u8]) {
    let Some((status, body)) = data.split_first() else {
        return;
    };
    let status = rex_plugin_abi::RexStatus(u32::from(*status));
    let body = crate::plugin::decode_body(body);
    let result = crate::plugin::interpret(status, body, "fuzz_worker", "rex.fuzz");
    if let crate::plugin::CallResult::Ok(body) = result
        && let Ok(submits) = crate::worker::submits_of(&body)
    {
        let done = rex_transport::Settlement::Complete {
            lease: rex_transport::Lease { id: 1, token: 1 },
            submits,
            result: None,
        };
        let _ = rex_transport::batch::validate_submits(std::slice::from_ref(&done));
    }
}
