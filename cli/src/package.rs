//! Packages: what each contributes (settings defaults, workers, tasks) and the built-in ones.
//!
//! Built-in packages (`rex.ctl`, `rex.asynctask`) are compiled into the binary and described
//! with the same [`Package`] type as packages loaded from plugins, so the rest of rex never
//! needs to know where a package came from.

use std::path::PathBuf;

use crate::plugin::{Manifest, TaskDecl, WorkerDecl};

/// The built-in worker that runs `rex <command>` for scheduled ctl entries.
pub const CTL_EXECUTOR: &str = "ctl_executor";

/// The built-in no-op worker that `rex asynctask-bench` measures with.
pub const BENCH_WORKER: &str = "bench_worker";

#[derive(Clone, Debug)]
pub enum Source {
    Builtin,
    Plugin(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub requires: Vec<String>,
    /// The package's `settings.yaml` text.
    pub settings_yaml: String,
    pub workers: Vec<WorkerDecl>,
    pub tasks: Vec<TaskDecl>,
    pub source: Source,
}

impl Package {
    pub fn from_manifest(manifest: Manifest, path: PathBuf) -> Package {
        Package {
            name: manifest.package,
            version: manifest.version,
            requires: manifest.requires,
            settings_yaml: manifest.settings,
            workers: manifest.workers,
            tasks: manifest.tasks,
            source: Source::Plugin(path),
        }
    }

    pub fn plugin_path(&self) -> Option<&PathBuf> {
        match &self.source {
            Source::Plugin(path) => Some(path),
            Source::Builtin => None,
        }
    }
}

/// The packages compiled into rex, or `None` if `name` is not one of them.
pub fn builtin(name: &str) -> Option<Package> {
    let version = env!("CARGO_PKG_VERSION").to_string();
    match name {
        "rex.ctl" => Some(Package {
            name: name.into(),
            version,
            requires: vec![],
            settings_yaml: String::new(),
            workers: vec![],
            tasks: vec![],
            source: Source::Builtin,
        }),
        "rex.asynctask" => Some(Package {
            name: name.into(),
            version,
            requires: vec!["rex.ctl".into()],
            settings_yaml: String::new(),
            workers: vec![
                WorkerDecl {
                    name: CTL_EXECUTOR.into(),
                    logger: "CtlExecutorWorker".into(),
                    summary: "This worker will execute the specified rex.ctl Task command.".into(),
                },
                WorkerDecl {
                    name: BENCH_WORKER.into(),
                    logger: "BenchWorker".into(),
                    summary: "Does nothing (rex asynctask-bench records start times through it)."
                        .into(),
                },
            ],
            tasks: vec![],
            source: Source::Builtin,
        }),
        _ => None,
    }
}
