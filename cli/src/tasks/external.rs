//! External tasks: `rex foo` runs the executable `rex-foo` found on `PATH` when neither a
//! built-in task nor a plugin of the application is named `foo` (as `cargo foo` and `git foo`
//! do). The program replaces `rex` (exec), so its exit status and signals are its own.
//!
//! It gets the arguments after the task name, less the application options (`--project`,
//! `--require`, `--set`, `--plugin-path`), which `rex` applies to build the application it
//! describes in the environment:
//!
//! * `REX` — the path of the `rex` executable, to call back the same rex.
//! * `REX_PROJECT_DIR` — the project directory (the nearest `rex.yaml`'s, or the current one).
//! * `REX_SETTINGS` — the application's effective settings, one JSON object.
//! * `REX_PROJECT` — the project named with `--project`, when one was (otherwise inherited).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::project::App;

const PREFIX: &str = "rex-";

/// Every `rex-*` executable on `PATH` as (task name, path), the first of each name (the one
/// that runs), sorted by name.
pub fn all() -> Vec<(String, PathBuf)> {
    let Some(path) = std::env::var_os("PATH") else {
        return vec![];
    };
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            let Some(name) = file.strip_prefix(PREFIX).filter(|n| !n.is_empty()) else {
                continue;
            };
            if is_executable(&entry.path()) && !found.iter().any(|(n, _)| n == name) {
                found.push((name.to_string(), entry.path()));
            }
        }
    }
    found.sort();
    found
}

fn is_executable(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `rex-<name>` that `rex <name>` would run.
pub fn find(name: &str) -> Option<PathBuf> {
    // A name is one file name: `rex ../x` must not reach outside the PATH directories.
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(format!("{PREFIX}{name}")))
        .find(|p| is_executable(p))
}

/// Run `program` for `rex <name> <argv>`; returns only if it cannot be started.
pub fn run(name: &str, program: PathBuf, argv: &[String]) -> Result<i32> {
    let (args, rest) = super::ctl::split_app_args(argv);
    // Like `rex settings`: without a project, the application of the built-in packages.
    let app = App::build_for_ctl(&args)?;
    let mut cmd = std::process::Command::new(&program);
    cmd.arg0(format!("{PREFIX}{name}"))
        .args(rest)
        .env("REX_PROJECT_DIR", &app.base_dir)
        .env("REX_SETTINGS", app.settings.to_json().to_string());
    if let Ok(exe) = std::env::current_exe() {
        cmd.env("REX", exe);
    }
    if let Some(project) = &args.project {
        cmd.env("REX_PROJECT", project);
    }
    let e = cmd.exec();
    Err(Error::new(format!(
        "cannot run {} for task {name}: {e}",
        program.display()
    )))
}
