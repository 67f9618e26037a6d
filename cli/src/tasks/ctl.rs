//! The `rex.ctl` tasks: `help`, `settings`, and running tasks provided by plugins.

use crate::cli::{ArgSpec, Parsed, TaskSpec, normalize};
use crate::error::{Error, Result};
use crate::logging;
use crate::plugin::{self, TaskDecl};
use crate::project::{App, ProjectArgs, Requirement};
use crate::settings::SPECS;

/// Printed by a bare `rex`.
pub const BANNER: &str = "Rex - Command-line administration utility for the rex platform\n\
Usage: rex <task> [<arguments>...] [--project=NAME] [--require=PACKAGE] [--set=PARAM=VALUE]\n\n\
Run rex help for general usage and a list of tasks and settings.\n\
Run rex help <topic> for help on a specific task or setting.\n\
Run rex --version (or rex -V) for the version of rex.\n";

pub fn help(parsed: &Parsed) -> Result<i32> {
    if parsed.flag("man") {
        print!("{}", super::generate::man_page()?);
        return Ok(0);
    }
    let Some(topic) = parsed.arg("topic") else {
        print!("{}", overview());
        return Ok(0);
    };
    if let Some(builtin) = super::find(&topic).filter(|b| !b.hidden) {
        print!("{}", builtin.spec.help());
        return Ok(0);
    }
    let setting = topic.replace('-', "_");
    if let Some(spec) = SPECS.iter().find(|s| s.name == setting) {
        print!("{}", setting_help(spec));
        return Ok(0);
    }
    if let Some((_, decl)) = plugin_task(&topic, &ProjectArgs::default())? {
        print!("{}", plugin_task_spec(&decl).help());
        return Ok(0);
    }
    if let Some(program) = super::external::find(&topic) {
        println!(
            "{} - external task {}\nUsage: rex {topic} [<arguments>...]\n\nRun rex {topic} --help for its own help, if it has one.",
            topic.to_uppercase(),
            program.display()
        );
        return Ok(0);
    }
    Err(Error::new(format!("unknown help topic {topic}")))
}

fn overview() -> String {
    let mut out = String::from(BANNER);
    out.push_str("\nAvailable tasks:\n");
    let mut listed = Vec::new();
    for builtin in super::builtins().into_iter().filter(|b| !b.hidden) {
        out.push_str(&builtin.spec.summary_line());
        out.push('\n');
        listed.push(builtin.spec.name);
    }
    // Tasks of the current project's plugins, when a project is configured.
    if let Ok(app) = App::build(
        &ProjectArgs::default(),
        Requirement {
            package: "rex.ctl",
            fallback: None,
        },
    ) {
        for decl in app.packages.iter().flat_map(|p| p.tasks.iter()) {
            out.push_str(&plugin_task_spec(decl).summary_line());
            out.push('\n');
            listed.push(decl.name.clone());
        }
    }
    // Programs named rex-<task> on PATH, unless a task above has their name (it runs instead).
    let external: Vec<_> = super::external::all()
        .into_iter()
        .filter(|(name, _)| !listed.contains(name))
        .collect();
    if !external.is_empty() {
        out.push_str("\nExternal tasks (from PATH):\n");
        for (name, path) in external {
            out.push_str(&format!("  {name:<24} : {}\n", path.display()));
        }
    }
    out.push_str("\nSettings:\n");
    for spec in SPECS {
        out.push_str(&format!(
            "  {:<24} : {}\n",
            spec.name,
            first_sentence(spec.doc)
        ));
    }
    out.push_str("\nGlobal options (accepted by every task that builds an application):\n");
    out.push_str("  --project=NAME           : the primary package (also REX_PROJECT, or project: in rex.yaml)\n");
    out.push_str("  --plugin-path=DIR        : an extra directory to search for plugins (also REX_PLUGIN_PATH)\n");
    out
}

fn first_sentence(doc: &str) -> &str {
    doc.split_once(". ")
        .map(|(s, _)| s)
        .unwrap_or(doc)
        .trim_end_matches('.')
}

fn setting_help(spec: &crate::settings::SettingSpec) -> String {
    format!(
        "{} - setting of package {}\n\n{}\n\nDefault: {}\n",
        spec.name.to_uppercase(),
        spec.package,
        spec.doc,
        spec.default
    )
}

pub fn settings(parsed: &Parsed) -> Result<i32> {
    let app = App::build_for_ctl(&parsed.project_args())?;
    if parsed.flag("defaults") {
        let mut out = String::new();
        for spec in SPECS.iter().filter(|s| app.has_package(s.package)) {
            out.push_str(&format!(
                "# {} ({})\n{}: {}\n\n",
                spec.doc, spec.package, spec.name, spec.default
            ));
        }
        print!("{out}");
    } else {
        print!("{}", app.settings.to_yaml());
    }
    Ok(0)
}

fn plugin_task_spec(decl: &TaskDecl) -> TaskSpec {
    TaskSpec {
        name: decl.name.clone(),
        hint: decl.hint.clone(),
        help: decl.help.clone(),
        args: vec![ArgSpec {
            name: "arguments",
            optional: true,
            plural: true,
        }],
        options: vec![],
        // The SDK declares `rex <name>` when the author gives none.
        usage: Some(decl.usage.clone()).filter(|u| !u.is_empty()),
    }
}

/// Find `name` among the tasks of the configured application's plugins.
fn plugin_task(name: &str, args: &ProjectArgs) -> Result<Option<(App, TaskDecl)>> {
    let app = match App::build(
        args,
        Requirement {
            package: "rex.ctl",
            fallback: None,
        },
    ) {
        Ok(app) => app,
        // No project configured: there are no plugin tasks to look in.
        Err(e) if e.render().starts_with(crate::project::NOT_SPECIFIED) => return Ok(None),
        Err(e) => return Err(e),
    };
    let decl = app
        .packages
        .iter()
        .flat_map(|p| p.tasks.iter())
        .find(|t| t.name == name)
        .cloned();
    Ok(decl.map(|d| (app, d)))
}

/// Split the application options (`--project`, `--require`, `--set`, `--plugin-path`) from the
/// arguments that belong to the plugin task.
pub(crate) fn split_app_args(argv: &[String]) -> (ProjectArgs, Vec<String>) {
    let mut args = ProjectArgs::default();
    let mut rest = Vec::new();
    let normalized = normalize(argv);
    let mut it = normalized.into_iter().zip(argv.iter().cloned());
    while let Some((norm, raw)) = it.next() {
        let (name, inline) = match norm.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (norm.clone(), None),
        };
        let slot = match name.as_str() {
            "--project" => Some(0),
            "--require" => Some(1),
            "--set" => Some(2),
            "--plugin-path" => Some(3),
            _ => None,
        };
        let Some(slot) = slot else {
            rest.push(raw);
            continue;
        };
        let Some(value) = inline.or_else(|| it.next().map(|(_, raw)| raw)) else {
            continue;
        };
        match slot {
            0 => args.project = Some(value),
            1 => args.requires.push(value),
            2 => args.sets.push(value),
            _ => args.plugin_paths.push(value),
        }
    }
    (args, rest)
}

/// Run a plugin-provided task; `None` if no plugin provides `name`.
pub fn run_plugin_task(name: &str, argv: &[String]) -> Result<Option<i32>> {
    let (args, rest) = split_app_args(argv);
    let Some((app, decl)) = plugin_task(name, &args)? else {
        return Ok(None);
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", plugin_task_spec(&decl).help());
        return Ok(Some(0));
    }
    let package = app
        .packages
        .iter()
        .find(|p| p.tasks.iter().any(|t| t.name == name))
        .ok_or_else(|| Error::new(format!("unknown task {name}")))?;
    let log = app.settings.log_config();
    logging::configure(log.clone());
    let plugin = app
        .load_plugin(package)?
        .ok_or_else(|| Error::new(format!("unknown task {name}")))?;
    plugin
        .init(
            plugin::host_table(log.min_level()),
            &serde_json::json!({"settings": app.settings.to_json()}),
        )
        .map_err(Error::from)?;
    match plugin.run_task(name, &rest) {
        Ok(code) => Ok(Some(code)),
        Err(plugin::PluginError::Call { message, .. }) => Err(Error::new(message)),
        Err(e) => Err(Error::from(e)),
    }
}
