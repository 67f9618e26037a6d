//! rex.ctl command-line conventions on top of clap.
//!
//! * `rex <task> [<arguments>...] [options]`; options may appear anywhere, even before the task
//!   name ([`crate::tasks::task_first`] moves them after it).
//! * Option names are normalised: `--halt_when_empty` is `--halt-when-empty`.
//! * `--name=value` and `--name value` both work; toggles take no value.
//! * `rex help <task>` and `rex <task> --help` print the rex.ctl help layout.
//! * Every mistake is a one-line `FATAL ERROR: ...` and exit status 1.
//!
//! Each task is described by a [`TaskSpec`]; clap does the parsing and its errors are
//! translated into the rex.ctl messages.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::error::{Error, Result};
use crate::project::ProjectArgs;

/// A positional argument.
#[derive(Clone, Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    pub optional: bool,
    pub plural: bool,
}

/// An option. `value` is the value's name (`PACKAGE`), or `None` for a toggle.
#[derive(Clone, Debug)]
pub struct OptSpec {
    pub long: &'static str,
    pub short: Option<char>,
    pub value: Option<&'static str>,
    pub hint: &'static str,
    pub plural: bool,
    pub hidden: bool,
}

impl OptSpec {
    pub const fn toggle(long: &'static str, hint: &'static str) -> Self {
        OptSpec {
            long,
            short: None,
            value: None,
            hint,
            plural: false,
            hidden: false,
        }
    }
    pub const fn value(long: &'static str, value: &'static str, hint: &'static str) -> Self {
        OptSpec {
            long,
            short: None,
            value: Some(value),
            hint,
            plural: false,
            hidden: false,
        }
    }
    pub const fn short(mut self, short: char) -> Self {
        self.short = Some(short);
        self
    }
    pub const fn plural(mut self) -> Self {
        self.plural = true;
        self
    }
    pub const fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }
}

/// The options every application-building task takes, shown first in help.
pub fn app_options() -> Vec<OptSpec> {
    vec![
        OptSpec::value("require", "PACKAGE", "include an additional package").plural(),
        OptSpec::value("set", "PARAM=VALUE", "set a configuration parameter").plural(),
        OptSpec::value("project", "NAME", "the primary package of the application").hidden(),
        OptSpec::value(
            "plugin-path",
            "DIR",
            "an extra directory to search for plugins",
        )
        .plural()
        .hidden(),
    ]
}

#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub name: String,
    pub hint: String,
    pub help: String,
    pub args: Vec<ArgSpec>,
    pub options: Vec<OptSpec>,
    /// The usage line a plugin declares for its task (`rex acme-hello [NAME]`), shown instead
    /// of the one built from `args`, which for a plugin task cannot say what it takes.
    pub usage: Option<String>,
}

impl TaskSpec {
    /// This task as a clap command, for shell completions and the man page (the parser's
    /// command, with the texts of `rex help <task>`).
    pub fn documented_command(&self) -> Command {
        let cmd = self
            .command()
            .no_binary_name(false)
            .about(self.hint.clone());
        match self.help.is_empty() {
            true => cmd,
            false => cmd.long_about(self.help.clone()),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.name.clone())
            .no_binary_name(true)
            .disable_help_flag(true)
            .disable_version_flag(true)
            .disable_help_subcommand(true)
            .arg(
                Arg::new("help")
                    .long("help")
                    .short('h')
                    .help("show this help")
                    .action(ArgAction::SetTrue),
            );
        for arg in &self.args {
            let mut a = Arg::new(format!("arg:{}", arg.name)).value_name(arg.name);
            if !arg.optional {
                a = a.required_unless_present("help");
            }
            if arg.plural {
                a = a.num_args(1..).action(ArgAction::Append);
            }
            cmd = cmd.arg(a);
        }
        for opt in &self.options {
            let mut a = Arg::new(opt.long)
                .long(opt.long)
                .help(opt.hint)
                .hide(opt.hidden);
            if let Some(short) = opt.short {
                a = a.short(short);
            }
            a = match (opt.value, opt.plural) {
                (None, _) => a.action(ArgAction::SetTrue),
                (Some(v), true) => a
                    .value_name(v)
                    .num_args(1)
                    .action(ArgAction::Append)
                    .allow_hyphen_values(true),
                (Some(v), false) => a
                    .value_name(v)
                    .num_args(1)
                    .action(ArgAction::Set)
                    .allow_hyphen_values(true),
            };
            cmd = cmd.arg(a);
        }
        cmd
    }

    /// Parse this task's arguments (everything after the task name).
    pub fn parse(&self, argv: &[String]) -> Result<Parsed> {
        let argv = normalize(argv);
        match self.command().try_get_matches_from(argv) {
            Ok(matches) => Ok(Parsed { matches }),
            Err(e) => Err(self.translate(e)),
        }
    }

    fn translate(&self, e: clap::Error) -> Error {
        let arg = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => s.split_whitespace().next().unwrap_or("").to_string(),
            _ => String::new(),
        };
        let option = arg.split(['=', ' ']).next().unwrap_or("").to_string();
        let message = match e.kind() {
            ErrorKind::UnknownArgument if arg.starts_with('-') => {
                format!("unknown option {option}")
            }
            ErrorKind::UnknownArgument | ErrorKind::TooManyValues => {
                if arg.starts_with("--") {
                    format!("unexpected value for a toggle option {option}")
                } else {
                    format!("too many arguments for task {}", self.name)
                }
            }
            ErrorKind::MissingRequiredArgument => {
                let missing = match e.get(ContextKind::InvalidArg) {
                    // clap shows optional-looking names (`[payload]`) for args that are
                    // required unless --help is given; rex.ctl always says `<payload>`.
                    Some(ContextValue::Strings(v)) => v
                        .iter()
                        .map(|a| {
                            format!(
                                "<{}>",
                                a.trim_end_matches("...").trim_matches(['[', ']', '<', '>'])
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => String::new(),
                };
                format!(
                    "too few arguments for task {}: missing {missing}",
                    self.name
                )
            }
            ErrorKind::ArgumentConflict => format!("duplicate option {option}"),
            ErrorKind::InvalidValue
                if e.get(ContextKind::InvalidValue)
                    .is_none_or(|v| matches!(v, ContextValue::String(s) if s.is_empty())) =>
            {
                format!("missing value for option {option}")
            }
            _ => {
                let text = e.to_string();
                let first = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string();
                format!("invalid arguments for task {}: {first}", self.name)
            }
        };
        Error::new(message)
    }

    /// The rex.ctl help layout.
    pub fn help(&self) -> String {
        let usage = self.usage.clone().unwrap_or_else(|| {
            let mut usage = format!("rex {}", self.name);
            for arg in &self.args {
                let mut a = format!("<{}>", arg.name);
                if arg.plural {
                    a.push_str("...");
                }
                if arg.optional {
                    a = format!("[{a}]");
                }
                usage.push(' ');
                usage.push_str(&a);
            }
            usage
        });
        let mut out = format!(
            "{} - {}\nUsage: {usage}\n\n",
            self.name.to_uppercase(),
            self.hint
        );
        if !self.help.is_empty() {
            out.push_str(self.help.trim_end());
            out.push_str("\n\n");
        }
        let shown: Vec<&OptSpec> = self.options.iter().filter(|o| !o.hidden).collect();
        if !shown.is_empty() {
            out.push_str("Options:\n");
            for opt in shown {
                let mut usage = match opt.short {
                    Some(short) => format!("-{short}/--{}", opt.long),
                    None => format!("--{}", opt.long),
                };
                if let Some(value) = opt.value {
                    usage.push('=');
                    usage.push_str(value);
                }
                out.push_str(&format!("  {usage:<24} : {}\n", opt.hint));
            }
            out.push('\n');
        }
        out
    }

    /// The line for this task in `rex help`.
    pub fn summary_line(&self) -> String {
        let usage = match &self.usage {
            Some(declared) => declared
                .strip_prefix("rex ")
                .unwrap_or(declared)
                .to_string(),
            None => {
                let mut usage = self.name.clone();
                for arg in &self.args {
                    usage.push_str(if arg.optional { " [<" } else { " <" });
                    usage.push_str(arg.name);
                    usage.push_str(if arg.optional { ">]" } else { ">" });
                }
                usage
            }
        };
        format!("  {usage:<24} : {}", self.hint)
    }
}

/// `--halt_when_empty` → `--halt-when-empty`, `--Quiet` → `--quiet`; values untouched.
pub fn normalize(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut rest = false;
    for arg in argv {
        if rest || !arg.starts_with("--") || arg == "--" {
            rest |= arg == "--";
            out.push(arg.clone());
            continue;
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        let mut norm = name.to_lowercase().replace('_', "-");
        if let Some(v) = value {
            norm.push('=');
            norm.push_str(v);
        }
        out.push(norm);
    }
    out
}

/// What an option lookup found; an option the task does not declare is a programming error.
fn declared<T>(name: &str, found: Result<Option<T>, clap::parser::MatchesError>) -> Option<T> {
    match found {
        Ok(value) => value,
        Err(e) => {
            debug_assert!(false, "option {name:?} is not declared by this task: {e}");
            None
        }
    }
}

/// Parsed arguments of one task.
pub struct Parsed {
    matches: ArgMatches,
}

impl Parsed {
    pub fn help_requested(&self) -> bool {
        self.flag("help")
    }

    /// A `--flag` of this task. The name must be declared by the task: a misspelled name is a
    /// bug, caught by a debug assertion whenever a test runs the task (a release build reads
    /// `false`, as clap would for an absent flag).
    pub fn flag(&self, name: &str) -> bool {
        declared(name, self.matches.try_get_one::<bool>(name))
            .copied()
            .unwrap_or(false)
    }

    /// The value of a `--name=VALUE` option of this task (declared, as for [`flag`](Self::flag)).
    pub fn value(&self, name: &str) -> Option<String> {
        declared(name, self.matches.try_get_one::<String>(name)).cloned()
    }

    /// Every value of a repeatable option of this task (declared, as for [`flag`](Self::flag)).
    pub fn values(&self, name: &str) -> Vec<String> {
        declared(name, self.matches.try_get_many::<String>(name))
            .map(|v| v.cloned().collect())
            .unwrap_or_default()
    }

    /// The value of an option that only some tasks declare (absent elsewhere).
    fn value_if_declared(&self, name: &str) -> Option<String> {
        self.matches
            .try_get_one::<String>(name)
            .ok()
            .flatten()
            .cloned()
    }

    /// A positional argument.
    pub fn arg(&self, name: &str) -> Option<String> {
        self.value(&format!("arg:{name}"))
    }

    /// A plural positional argument.
    pub fn args(&self, name: &str) -> Vec<String> {
        self.values(&format!("arg:{name}"))
    }

    /// The project selection (`<project>` positional if the task has one, else `--project`).
    pub fn project_args(&self) -> ProjectArgs {
        ProjectArgs {
            project: self
                .value_if_declared("arg:project")
                .or_else(|| self.value_if_declared("project")),
            requires: self.values("require"),
            sets: self.values("set"),
            plugin_paths: self.values("plugin-path"),
        }
    }
}
