//! What is generated from the task specs ([`super::builtins`]): shell completions
//! (`rex completions <shell>`, with `clap_complete`) and the man page (`rex help --man`, with
//! `clap_mangen`), so neither can drift from `rex help`.
//!
//! The generated scripts complete task names and options. Names that depend on the project —
//! queues (`--queue`, the `<queue>` of `asynctask-submit`/`-process`), workers (`--worker`),
//! plugin and external tasks — are asked from `rex __complete <what>` as you type, in bash and
//! fish; zsh gets the static part only.

use std::fmt::Write as _;

use clap::{Command, ValueHint};

use crate::cli::Parsed;
use crate::error::{Error, Result};
use crate::project::{App, Requirement};
use crate::settings::SPECS;

/// The hidden task the completion scripts call for project-dependent names.
pub const COMPLETE_TASK: &str = "__complete";

/// One clap command tree of every listed task: the definitions `rex help` renders.
pub fn command_tree() -> Command {
    let mut root = Command::new("rex")
        .about("Command-line administration utility for the rex platform")
        .long_about(
            "rex runs the tasks of a project: the built-in ones, those of the project's plugins, \
             and rex-<task> programs found on PATH. Options may come before or after the task \
             name; --name_with_underscores is the same option as --name-with-underscores.",
        )
        .version(crate::VERSION)
        .disable_help_subcommand(true)
        .subcommand_required(false);
    for builtin in super::builtins().into_iter().filter(|b| !b.hidden) {
        let mut cmd = builtin.spec.documented_command();
        if builtin.spec.args.iter().any(|a| a.name == "file") {
            cmd = cmd.mut_arg("arg:file", |a| a.value_hint(ValueHint::FilePath));
        }
        root = root.subcommand(cmd);
    }
    root
}

/// The tasks and options that take a queue or a worker name, from the specs.
struct Dynamic {
    /// Tasks whose first positional argument is a queue.
    queue_first: Vec<String>,
    queue_options: Vec<&'static str>,
    worker_options: Vec<&'static str>,
}

fn dynamic() -> Dynamic {
    let builtins = super::builtins();
    let options = || builtins.iter().flat_map(|b| &b.spec.options);
    let mut queue_options: Vec<&str> = options()
        .filter(|o| o.value == Some("QUEUE"))
        .map(|o| o.long)
        .collect();
    let mut worker_options: Vec<&str> = options()
        .filter(|o| o.value == Some("WORKER"))
        .map(|o| o.long)
        .collect();
    queue_options.dedup();
    worker_options.dedup();
    Dynamic {
        queue_first: builtins
            .iter()
            .filter(|b| b.spec.args.first().is_some_and(|a| a.name == "queue"))
            .map(|b| b.spec.name.clone())
            .collect(),
        queue_options,
        worker_options,
    }
}

/// Bash: the project-dependent names first, else clap's completion (`_rex`).
fn bash_dynamic(d: &Dynamic) -> String {
    let options = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("--{n}"))
            .collect::<Vec<_>>()
            .join("|")
    };
    let first: Vec<String> = d.queue_first.iter().map(|t| format!("{t}:2")).collect();
    format!(
        r#"
# Project-dependent names (queues, workers, plugin and external tasks) come from
# `rex {COMPLETE_TASK}`, run in the current directory as you type.
_rex_project() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} what=
    if [[ $prev == = && $COMP_CWORD -ge 2 ]]; then prev=${{COMP_WORDS[COMP_CWORD-2]}}; fi
    case $prev in
        {queues}) what=queues ;;
        {workers}) what=workers ;;
    esac
    if [[ -z $what && $cur != -* ]]; then
        case "${{COMP_WORDS[1]}}:$COMP_CWORD" in
            {first}) what=queues ;;
        esac
    fi
    if [[ -n $what ]]; then
        COMPREPLY=($(compgen -W "$("${{COMP_WORDS[0]}}" {COMPLETE_TASK} $what 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _rex "$@"
    if [[ $COMP_CWORD -eq 1 && $cur != -* ]]; then
        COMPREPLY+=($(compgen -W "$("${{COMP_WORDS[0]}}" {COMPLETE_TASK} tasks 2>/dev/null)" -- "$cur"))
    fi
}}
complete -F _rex_project -o bashdefault -o default rex
"#,
        queues = options(&d.queue_options),
        workers = options(&d.worker_options),
        first = first.join("|"),
    )
}

/// Fish adds up the candidates of every matching `complete` line.
fn fish_dynamic(d: &Dynamic) -> String {
    // `__fish_rex_needs_command` and `__fish_rex_using_subcommand` are clap's, defined above.
    let mut out = format!(
        "\n# Project-dependent names come from `rex {COMPLETE_TASK}`, run as you type.\n\
         complete -c rex -n '__fish_rex_needs_command' -f -a '(rex {COMPLETE_TASK} tasks 2>/dev/null)'\n"
    );
    for task in &d.queue_first {
        let _ = writeln!(
            out,
            "complete -c rex -n '__fish_rex_using_subcommand {task}; and test (count (commandline -opc)) -eq 2' -f -a '(rex {COMPLETE_TASK} queues 2>/dev/null)'"
        );
    }
    for (names, what) in [(&d.queue_options, "queues"), (&d.worker_options, "workers")] {
        for name in names.iter() {
            let _ = writeln!(
                out,
                "complete -c rex -l {name} -x -a '(rex {COMPLETE_TASK} {what} 2>/dev/null)'"
            );
        }
    }
    out
}

/// `rex completions <shell>`.
pub fn completions(parsed: &Parsed) -> Result<i32> {
    use clap_complete::Shell;
    let shell = parsed.arg("shell").unwrap_or_default();
    let shell = match shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        _ => {
            return Err(Error::with_body("Expected one of:", "bash, zsh, fish")
                .context("Got:", format!("{shell:?}"))
                .context("While parsing argument:", "<shell>"));
        }
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command_tree(), "rex", &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    match shell {
        Shell::Bash => script.push_str(&bash_dynamic(&dynamic())),
        Shell::Fish => script.push_str(&fish_dynamic(&dynamic())),
        _ => {}
    }
    print!("{script}");
    Ok(0)
}

/// `rex __complete <queues|workers|tasks>`: names for the completion scripts, one a line.
pub fn complete(parsed: &Parsed) -> Result<i32> {
    let what = parsed.arg("what").unwrap_or_default();
    let names: Vec<String> = match what.as_str() {
        "queues" | "workers" => {
            let app = App::build_for_ctl(&parsed.project_args())?;
            if what == "queues" {
                app.settings
                    .queues()
                    .iter()
                    .map(|q| q.queue.clone())
                    .collect()
            } else {
                app.worker_names()
            }
        }
        "tasks" => {
            let mut names: Vec<String> = super::external::all()
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            let app = App::build(
                &parsed.project_args(),
                Requirement {
                    package: "rex.ctl",
                    fallback: Some("rex.ctl"),
                },
            );
            if let Ok(app) = app {
                names.extend(
                    app.packages
                        .iter()
                        .flat_map(|p| p.tasks.iter().map(|t| t.name.clone())),
                );
            }
            names
        }
        _ => return Err(Error::new(format!("nothing to complete named {what:?}"))),
    };
    // Written at once, errors ignored: the shell may stop reading (a closed pipe is no failure).
    let mut text = names.join("\n");
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(0)
}

/// Text for roff: no line may start with a control character, backslashes are escaped.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|line| {
            // `\-`: a minus sign, so that options copied from the page work.
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with(['.', '\'']) {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `rex help --man`: the man page of rex, its tasks and its settings.
pub fn man_page() -> Result<String> {
    let man = clap_mangen::Man::new(command_tree());
    let mut page = Vec::new();
    // clap's sections, less its synopsis and subcommand list: those name a `rex-<task>(1)`
    // page per task, where rex has one page with the tasks in full (below).
    let rendered = (|| {
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        page.extend_from_slice(
            b".SH SYNOPSIS\n\\fBrex\\fR \\fItask\\fR [\\fIarguments\\fR...] [\\fIoptions\\fR]\n",
        );
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)
    })();
    rendered.map_err(|e| Error::new(format!("cannot render the man page: {e}")))?;
    let mut out = String::from_utf8_lossy(&page).into_owned();
    // The tasks in full, as `rex help <task>` shows them, then the settings.
    out.push_str(".SH TASKS\n");
    for builtin in super::builtins().into_iter().filter(|b| !b.hidden) {
        let _ = writeln!(
            out,
            ".SS {}\n.nf\n{}\n.fi",
            roff_text(&builtin.spec.name),
            roff_text(builtin.spec.help().trim_end())
        );
    }
    out.push_str(
        ".SS External tasks\nrex \\fItask\\fR runs the program rex\\-\\fItask\\fR found on PATH when no built\\-in or plugin task has that name.\n",
    );
    out.push_str(".SH SETTINGS\n");
    for spec in SPECS {
        let _ = writeln!(
            out,
            ".TP\n\\fB{}\\fR (package {}, default {})\n{}",
            spec.name,
            spec.package,
            roff_text(spec.default),
            roff_text(spec.doc)
        );
    }
    Ok(out)
}
