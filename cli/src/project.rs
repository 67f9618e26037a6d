//! Building an application: which packages, from where, with which settings.
//!
//! The project directory is the nearest directory holding a `rex.yaml`, the current one or a
//! parent (as cargo and git find their manifests), so a command run in a subdirectory uses the
//! same `.rex/` database, plugins and settings as one run at the root; without a `rex.yaml`
//! anywhere, it is the current directory. The project (primary package: a package name, not a
//! directory) comes from the command line (`<project>` or `--project`), then `REX_PROJECT`,
//! then `project:` in that `rex.yaml`. Requirements are the project, each `--require`, and
//! rex.yaml's `requirements:`; each package's own `requires` are loaded depth-first so
//! dependencies come before their dependents.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::package::{self, Package};
use crate::plugin::{self, Plugin, WorkerDecl};
use crate::settings::{self, Settings, Source};
use rex_transport::Transport;

/// The project-selecting arguments every application task accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProjectArgs {
    /// `<project>` or `--project=NAME`.
    pub project: Option<String>,
    /// `--require=PACKAGE`, in order.
    pub requires: Vec<String>,
    /// `--set=PARAM=VALUE`, in order.
    pub sets: Vec<String>,
    /// `--plugin-path=DIR` (each may hold several `:`-separated directories).
    pub plugin_paths: Vec<String>,
}

impl ProjectArgs {
    /// The same selection as command-line arguments (for child `rex` processes).
    pub fn to_argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(p) = &self.project {
            argv.push(format!("--project={p}"));
        }
        argv.extend(self.requires.iter().map(|r| format!("--require={r}")));
        argv.extend(self.sets.iter().map(|s| format!("--set={s}")));
        argv.extend(
            self.plugin_paths
                .iter()
                .map(|p| format!("--plugin-path={p}")),
        );
        argv
    }
}

/// `rex.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RexYaml {
    project: Option<String>,
    #[serde(default)]
    requirements: Vec<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    plugins: Vec<String>,
}

fn load_rex_yaml(dir: &Path) -> Result<Option<(PathBuf, RexYaml)>> {
    let path = dir.join("rex.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::new(format!("cannot read {}: {e}", path.display()))),
    };
    let yaml: RexYaml = if text.trim().is_empty() {
        RexYaml::default()
    } else {
        serde_yaml::from_str(&text).map_err(|e| {
            Error::with_body(
                format!("Failed to parse {}:", path.display()),
                e.to_string(),
            )
        })?
    };
    Ok(Some((path, yaml)))
}

/// The nearest `rex.yaml`: in `start` or else its closest ancestor holding one.
/// The project directory — where `rex.yaml` was found, in the current directory or one of
/// its parents, else the current directory — and that `rex.yaml`.
fn locate_project() -> Result<(PathBuf, Option<(PathBuf, RexYaml)>)> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::new(format!("cannot determine the current directory: {e}")))?;
    let rex_yaml = find_rex_yaml(&cwd)?;
    let base_dir = rex_yaml
        .as_ref()
        .and_then(|(p, _)| p.parent().map(Path::to_path_buf))
        .unwrap_or(cwd);
    Ok((base_dir, rex_yaml))
}

fn find_rex_yaml(start: &Path) -> Result<Option<(PathBuf, RexYaml)>> {
    for dir in start.ancestors() {
        if let Some(found) = load_rex_yaml(dir)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The head of the error for a task that needs a project when none is named.
pub const NOT_SPECIFIED: &str = "application is not specified; name its package in one of:";

/// A built application.
pub struct App {
    pub requirements: Vec<String>,
    /// Dependencies first, the project last.
    pub packages: Vec<Package>,
    pub settings: Settings,
    /// Directory of the nearest rex.yaml (see [`find_rex_yaml`]), or the current directory.
    pub base_dir: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    pub args: ProjectArgs,
}

/// What an application task needs from the application.
pub struct Requirement<'a> {
    /// The package that defines the task; it must be part of the application.
    pub package: &'a str,
    /// Used as the project when nothing names one (operator tasks work without a project).
    pub fallback: Option<&'a str>,
}

impl App {
    /// The application for tasks of `rex.ctl` that work with or without a project (`settings`,
    /// completions, external tasks): the project's, else that of the built-in packages.
    pub fn build_for_ctl(args: &ProjectArgs) -> Result<App> {
        App::build(
            args,
            Requirement {
                package: "rex.ctl",
                fallback: Some("rex.asynctask"),
            },
        )
    }

    pub fn build(args: &ProjectArgs, need: Requirement<'_>) -> Result<App> {
        let (base_dir, rex_yaml) = locate_project()?;
        let yaml = rex_yaml.as_ref().map(|(_, y)| y);

        let project = args
            .project
            .clone()
            .or_else(|| std::env::var("REX_PROJECT").ok().filter(|p| !p.is_empty()))
            .or_else(|| yaml.and_then(|y| y.project.clone()));
        let mut requirements: Vec<String> = project.into_iter().collect();
        requirements.extend(args.requires.iter().cloned());
        requirements.extend(yaml.map(|y| y.requirements.clone()).unwrap_or_default());
        if requirements.is_empty() {
            match need.fallback {
                Some(fallback) => requirements.push(fallback.to_string()),
                None => {
                    return Err(Error::with_body(
                        NOT_SPECIFIED,
                        "the first argument (rex asynctask-workers rex.acme), --project=NAME, REX_PROJECT, or project: in rex.yaml (looked for in the current directory, then its parents)",
                    ));
                }
            }
        }

        let plugin_dirs = plugin_dirs(args, yaml, &base_dir);
        let mut packages = Vec::new();
        let mut seen = HashSet::new();
        for requirement in &requirements {
            load_package(requirement, &plugin_dirs, &mut seen, &mut packages)?;
        }
        if !packages.iter().any(|p| p.name == need.package) {
            // Usually the project's plugin left it out of its `export!` (workers need
            // rex.asynctask): say where it goes.
            let need = need.package;
            let project = requirements.first().map_or("the project", String::as_str);
            return Err(Error::new(format!(
                "package {need} must be included with the application"
            ))
            .context(
                "Hint:",
                format!(
                    "add requires: [\"{need}\"] to the export! of package {project} (or add it with --require={need} or requirements: [{need}] in rex.yaml)"
                ),
            ));
        }

        let sources = sources(&packages, yaml, args)?;
        let workers: Vec<String> = packages
            .iter()
            .flat_map(|p| p.workers.iter().map(|w| w.name.clone()))
            .collect();
        let specs: Vec<&settings::SettingSpec> = settings::SPECS
            .iter()
            .filter(|s| packages.iter().any(|p| p.name == s.package))
            .collect();
        let settings = Settings::build(&specs, &sources, &settings::Context { workers: &workers })
            .map_err(|e| {
                let e = e.context(
                    "While initializing rex application:",
                    requirements.join("\n"),
                );
                match settings::describe_parameters(&sources) {
                    Some(params) => e.context("With parameters:", params),
                    None => e,
                }
            })?;
        Ok(App {
            requirements,
            packages,
            settings,
            base_dir,
            plugin_dirs,
            args: args.clone(),
        })
    }

    pub fn has_package(&self, name: &str) -> bool {
        self.packages.iter().any(|p| p.name == name)
    }

    /// Every worker name, in registration order (built-ins first).
    pub fn worker_names(&self) -> Vec<String> {
        self.packages
            .iter()
            .flat_map(|p| p.workers.iter().map(|w| w.name.clone()))
            .collect()
    }

    /// The package providing `worker` and its declaration.
    pub fn worker(&self, worker: &str) -> Option<(&Package, &WorkerDecl)> {
        self.packages
            .iter()
            .rev()
            .find_map(|p| p.workers.iter().find(|w| w.name == worker).map(|w| (p, w)))
    }

    /// The transport URI with relative SQLite paths resolved against the project directory.
    pub fn transport_uri(&self) -> String {
        match self.settings.transport_uri() {
            None => format!(
                "sqlite:{}",
                self.base_dir.join(".rex").join("asynctask.db").display()
            ),
            Some(uri) => match uri.strip_prefix("sqlite:") {
                Some(path) if !path.is_empty() && !path.starts_with('/') => {
                    format!("sqlite:{}", self.base_dir.join(path).display())
                }
                _ => uri.to_string(),
            },
        }
    }

    pub fn open_transport(&self) -> Result<Arc<dyn Transport>> {
        let uri = self.transport_uri();
        // Every rex process publishes the events of what it does, while someone follows.
        let transport = rex_transport::open(&uri).map_err(Error::from)?;
        Ok(rex_transport::events::tap(transport))
    }

    /// The transport of an operator command, refused when it keeps tasks inside one process
    /// (`memory:`): what the command wrote there would vanish with it, unseen by any worker.
    pub fn open_shared_transport(&self) -> Result<Arc<dyn Transport>> {
        let transport = self.open_transport()?;
        if !transport.is_shared() {
            return Err(not_shared(transport.as_ref()));
        }
        Ok(transport)
    }

    /// Load the plugin providing `package` (checked against its manifest).
    pub fn load_plugin(&self, package: &Package) -> Result<Option<Plugin>> {
        match package.plugin_path() {
            None => Ok(None),
            Some(path) => Plugin::load(path, Some(&package.name))
                .map(Some)
                .map_err(Error::from),
        }
    }
}

/// The error for a transport other processes cannot see.
pub fn not_shared(transport: &dyn Transport) -> Error {
    Error::new(format!(
        "the {} transport keeps tasks inside one process, so worker processes cannot share it; use sqlite:PATH or a server transport",
        transport.describe()
    ))
}

/// The project directory (see [`App::base_dir`]) and the plugin search path, in search order,
/// without loading any package: what `rex plugin-list` walks.
pub fn search_path(args: &ProjectArgs) -> Result<(PathBuf, Vec<PathBuf>)> {
    let (base_dir, rex_yaml) = locate_project()?;
    let dirs = plugin_dirs(args, rex_yaml.as_ref().map(|(_, y)| y), &base_dir);
    Ok((base_dir, dirs))
}

fn plugin_dirs(args: &ProjectArgs, yaml: Option<&RexYaml>, base_dir: &Path) -> Vec<PathBuf> {
    let split = |s: &str| {
        s.split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect::<Vec<_>>()
    };
    let mut dirs: Vec<PathBuf> = args.plugin_paths.iter().flat_map(|p| split(p)).collect();
    if let Ok(env) = std::env::var("REX_PLUGIN_PATH") {
        dirs.extend(split(&env));
    }
    if let Some(yaml) = yaml {
        dirs.extend(yaml.plugins.iter().map(|p| base_dir.join(p)));
        dirs.push(base_dir.join("plugins"));
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(data_home) = data_home {
        dirs.push(data_home.join("rex/plugins"));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../lib/rex/plugins"));
        // A plain `cargo build` puts the plugins next to the binary.
        dirs.push(exe_dir);
    }
    let mut unique = HashSet::new();
    dirs.retain(|d| unique.insert(d.clone()));
    dirs
}

fn load_package(
    name: &str,
    dirs: &[PathBuf],
    seen: &mut HashSet<String>,
    out: &mut Vec<Package>,
) -> Result<()> {
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let package = match package::builtin(name) {
        Some(p) => p,
        None => {
            let path = plugin::find(name, dirs).map_err(Error::from)?;
            let plugin = Plugin::load(&path, Some(name)).map_err(Error::from)?;
            Package::from_manifest(plugin.manifest, path)
        }
    };
    for dep in &package.requires {
        load_package(dep, dirs, seen, out)?;
    }
    out.push(package);
    Ok(())
}

fn sources(
    packages: &[Package],
    yaml: Option<&RexYaml>,
    args: &ProjectArgs,
) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for package in packages {
        if package.settings_yaml.trim().is_empty() {
            continue;
        }
        let origin = format!("{} settings.yaml", package.name);
        let values: Value = serde_yaml::from_str(&package.settings_yaml).map_err(|e| {
            Error::with_body(
                format!("Failed to parse settings.yaml of package {}:", package.name),
                e.to_string(),
            )
        })?;
        match values {
            Value::Object(values) => sources.push(Source {
                origin,
                values,
                is_parameter: false,
            }),
            Value::Null => {}
            _ => return Err(Error::new("Expected a mapping of settings").context("In", origin)),
        }
    }
    if let Some(yaml) = yaml {
        sources.push(Source {
            origin: "rex.yaml parameters".into(),
            values: yaml.parameters.clone(),
            is_parameter: true,
        });
    }
    if let Ok(env) = std::env::var("REX_PARAMETERS")
        && !env.trim().is_empty()
    {
        let values = match serde_yaml::from_str::<Value>(&env) {
            Ok(Value::Object(values)) => values,
            _ => {
                return Err(
                    Error::new("invalid value for REX_PARAMETERS: Expected a JSON object")
                        .context("Got:", env),
                );
            }
        };
        sources.push(Source {
            origin: "REX_PARAMETERS".into(),
            values,
            is_parameter: true,
        });
    }
    for set in &args.sets {
        let (name, value) = settings::parse_set_arg(set)?;
        let mut values = Map::new();
        values.insert(name, value);
        sources.push(Source {
            origin: "--set".into(),
            values,
            is_parameter: true,
        });
    }
    Ok(sources)
}
