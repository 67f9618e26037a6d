//! `plugin-list` and `plugin-check`: what the libraries on the plugin search path export, or
//! why they are not rex plugins.
//!
//! Loading a library runs its initialisers, which may crash the process, hang, or call
//! `exit`. So each library is loaded by a throw-away child, `rex __plugin-probe <file>` (the
//! same re-exec of `rex` as the worker children), which prints one JSON [`Report`]; the parent
//! turns the child's death into a reason (`killed by SIGABRT`) and goes on with the next file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::Parsed;
use crate::error::{Error, Result};
use crate::plugin::Plugin;

/// The hidden task that loads one library and prints its [`Report`].
pub const PROBE_TASK: &str = "__plugin-probe";

/// How long a probe may take: a library whose initialisers hang is reported, not waited for.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one library exports, or why it is not a rex plugin (the `--json` fields).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// The library's path (absolute).
    pub file: String,
    /// Whether rex can use it.
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `major.minor` of the plugin ABI its table declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi_version: Option<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub workers: Vec<String>,
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The default settings its `settings.yaml` sets.
    #[serde(default)]
    pub settings: serde_json::Map<String, Value>,
    /// Why it is not usable: a kind (`abi_mismatch`, `crashed`, ...) and a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `plugin-list`: an earlier directory of the search path holds the same file name, and
    /// rex loads that one instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadowed_by: Option<String>,
}

impl Report {
    fn invalid(file: &Path, error: &str, reason: String) -> Report {
        Report {
            file: file.display().to_string(),
            error: Some(error.into()),
            reason: Some(reason),
            ..Report::default()
        }
    }

    fn of(plugin: &Plugin) -> Report {
        let m = &plugin.manifest;
        let (major, minor) = plugin.abi_version();
        let mut report = Report {
            file: plugin.path.display().to_string(),
            valid: true,
            package: Some(m.package.clone()),
            version: Some(m.version.clone()),
            abi_version: Some(format!("{major}.{minor}")),
            requires: m.requires.clone(),
            workers: m.workers.iter().map(|w| w.name.clone()).collect(),
            tasks: m.tasks.iter().map(|t| t.name.clone()).collect(),
            ..Report::default()
        };
        // The same reading of settings.yaml as when the package is loaded into an application.
        match serde_yaml::from_str::<Value>(&m.settings) {
            Ok(Value::Object(settings)) => report.settings = settings,
            Ok(Value::Null) => {}
            Ok(_) => report.fail("bad_settings", "its settings.yaml is not a mapping".into()),
            Err(e) => report.fail(
                "bad_settings",
                format!("its settings.yaml is malformed: {e}"),
            ),
        }
        report
    }

    fn fail(&mut self, error: &str, reason: String) {
        self.valid = false;
        self.error = Some(error.into());
        self.reason = Some(reason);
    }

    /// The text form: the file, then one labelled line per field.
    fn render(&self) -> String {
        let mut out = format!("{}\n", self.file);
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("  {label:<9} {value}\n"));
        };
        if let Some(package) = &self.package {
            let abi = self.abi_version.as_deref().unwrap_or("?");
            let version = self.version.as_deref().unwrap_or("");
            line(
                "package",
                format!("{package} {version} (plugin ABI v{abi})"),
            );
        }
        let names = |v: &[String]| match v.is_empty() {
            true => "-".to_string(),
            false => v.join(", "),
        };
        if self.valid {
            line("requires", names(&self.requires));
            line("workers", names(&self.workers));
            line("tasks", names(&self.tasks));
            let settings: Vec<String> = self.settings.keys().cloned().collect();
            line("settings", names(&settings));
        }
        if let Some(reason) = &self.reason {
            line("INVALID", reason.clone());
        }
        if let Some(by) = &self.shadowed_by {
            line("shadowed", format!("by {by}, which rex loads instead"));
        }
        out
    }
}

/// `rex __plugin-probe <file>`: load the library here and print its report as one JSON line.
pub fn probe(parsed: &Parsed) -> Result<i32> {
    let file = PathBuf::from(parsed.arg("file").unwrap_or_default());
    let report = match Plugin::load(&file, None) {
        Ok(plugin) => Report::of(&plugin),
        Err(e) => Report::invalid(&file, e.kind(), e.to_string()),
    };
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    Ok(0)
}

/// Check `file` in a child process; never fails: a problem is the report's reason.
pub fn check(file: &Path) -> Report {
    // Absolute, so that the loader never searches its own path for a bare file name.
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    match std::fs::metadata(&file) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            let reason = format!("{} is not a file", file.display());
            return Report::invalid(&file, "not_a_file", reason);
        }
        Err(e) => {
            let reason = format!("{}: {e}", file.display());
            return Report::invalid(&file, "not_a_file", reason);
        }
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            let reason = format!("cannot find the rex executable to check it with: {e}");
            return Report::invalid(&file, "probe_failed", reason);
        }
    };
    let child = Command::new(exe)
        .arg(PROBE_TASK)
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            let reason = format!("cannot start a process to check it: {e}");
            return Report::invalid(&file, "probe_failed", reason);
        }
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // The wait runs on a thread so that a hanging library can be given up on (and killed).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(output) => output,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            let reason = format!(
                "loading {} did not finish within {}s",
                file.display(),
                PROBE_TIMEOUT.as_secs()
            );
            return Report::invalid(&file, "timed_out", reason);
        }
    };
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            let reason = format!("cannot read the check's result: {e}");
            return Report::invalid(&file, "probe_failed", reason);
        }
    };
    // The report is the last line: the library's initialisers may have printed before it.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<Report>(l).ok());
    match report {
        Some(report) if output.status.success() => report,
        _ => {
            let cause = crate::supervisor::DeathCause::from_status(Some(output.status));
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said = match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(line) => format!(" ({line})"),
                None => String::new(),
            };
            let reason = format!("{} crashed while loading: {cause}{said}", file.display());
            Report::invalid(&file, "crashed", reason)
        }
    }
}

/// `rex plugin-check <file | package>`: exit 0 if the file is a usable plugin, 1 with the reason if not.
pub fn plugin_check(parsed: &Parsed) -> Result<i32> {
    let given = parsed.arg("file").unwrap_or_default();
    // A package name (`rex.acme`) is looked up on the search path, as rex would load it.
    let is_path = Path::new(&given).exists()
        || given.contains('/')
        || given.ends_with(std::env::consts::DLL_SUFFIX);
    let report = if is_path {
        check(Path::new(&given))
    } else {
        let (_, dirs) = crate::project::search_path(&parsed.project_args())?;
        match crate::plugin::find(&given, &dirs) {
            Ok(file) => check(&file),
            Err(e) => Report::invalid(Path::new(&given), e.kind(), e.to_string()),
        }
    };
    if parsed.flag("json") {
        println!("{}", to_json(&report));
        return Ok(if report.valid { 0 } else { 1 });
    }
    if !report.valid {
        return Err(Error::new(report.reason.unwrap_or_default()));
    }
    print!("{}", report.render());
    Ok(0)
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A file that may hold a package: `librex_*.so` (see [`crate::plugin::library_file_name`]).
fn is_library_name(name: &str) -> bool {
    let prefix = format!("{}rex_", std::env::consts::DLL_PREFIX);
    name.starts_with(&prefix) && name.ends_with(std::env::consts::DLL_SUFFIX)
}

/// `rex plugin-list`: every library on the search path, in search order, checked one by one.
pub fn plugin_list(parsed: &Parsed) -> Result<i32> {
    let (_, dirs) = crate::project::search_path(&parsed.project_args())?;
    let mut reports: Vec<Report> = Vec::new();
    let mut missing = Vec::new();
    let mut unreadable = Vec::new();
    for dir in &dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // Most of the search path is usually absent (~/.local/share/rex/plugins...).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(dir.clone());
                continue;
            }
            Err(e) => {
                unreadable.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_library_name(n))
            .collect();
        names.sort();
        for name in names {
            let mut report = check(&dir.join(&name));
            // `plugin::find` takes the first directory holding the file name.
            report.shadowed_by = reports
                .iter()
                .find(|r| {
                    r.shadowed_by.is_none() && Path::new(&r.file).file_name() == Some(name.as_ref())
                })
                .map(|r| r.file.clone());
            reports.push(report);
        }
    }
    if parsed.flag("json") {
        #[derive(Serialize)]
        struct Dir {
            dir: String,
            present: bool,
        }
        #[derive(Serialize)]
        struct Listing {
            search_path: Vec<Dir>,
            plugins: Vec<Report>,
        }
        let search_path = dirs
            .iter()
            .map(|d| Dir {
                dir: d.display().to_string(),
                present: !missing.contains(d),
            })
            .collect();
        let listing = Listing {
            search_path,
            plugins: reports,
        };
        println!("{}", to_json(&listing));
    } else {
        let mut out = String::from("Plugin search path, in order:\n");
        for dir in &dirs {
            let absent = if missing.contains(dir) {
                " (not present)"
            } else {
                ""
            };
            out.push_str(&format!("  {}{absent}\n", dir.display()));
        }
        if reports.is_empty() {
            out.push_str("\nNo plugin libraries (librex_*.so) found.\n");
        }
        for report in &reports {
            out.push('\n');
            out.push_str(&report.render());
        }
        print!("{out}");
    }
    if !unreadable.is_empty() {
        return Err(Error::with_body(
            "cannot read the plugin search path:",
            unreadable.join("\n"),
        ));
    }
    Ok(0)
}
