//! `rex plugin-new NAME [--path DIR]`: writes a plugin crate that builds, tests and runs as it
//! is, so a newcomer starts from working code rather than from the guide's fragments.
//!
//! The files are the templates in `plugin_new/` (kept as files to be read and reviewed as
//! what they produce), with `{{name}}`-style placeholders substituted.

use std::path::{Path, PathBuf};

use crate::cli::Parsed;
use crate::error::{Error, Result};

/// Each file written, by its path in the crate, with its template.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("plugin_new/Cargo.toml.tmpl")),
    (
        "settings.yaml",
        include_str!("plugin_new/settings.yaml.tmpl"),
    ),
    ("src/lib.rs", include_str!("plugin_new/lib.rs.tmpl")),
    ("rex.yaml", include_str!("plugin_new/rex.yaml.tmpl")),
    ("README.md", include_str!("plugin_new/README.md.tmpl")),
    (".gitignore", include_str!("plugin_new/gitignore.tmpl")),
];

/// The task the README and the printed next steps submit (the worker greets `name`).
const PAYLOAD: &str = r#"{"name": "world", "times": 2}"#;

pub fn plugin_new(parsed: &Parsed) -> Result<i32> {
    let name = parsed.arg("name").unwrap_or_default();
    check_name(&name)?;
    let dir = parsed
        .value("path")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(&name));
    check_unused(&dir)?;

    let vars = vars(&name);
    let mut created = Vec::new();
    for (path, template) in FILES {
        let file = dir.join(path);
        let parent = file.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", parent.display())))?;
        std::fs::write(&file, render(template, &vars))
            .map_err(|e| Error::new(format!("cannot write {}: {e}", file.display())))?;
        created.push(file);
    }
    // Said once every file is written: a failure above reports the file it could not write.
    println!("Created the plugin rex.{name} in {}:", dir.display());
    for file in created {
        println!("  {}", file.display());
    }
    let cd = shell_words::quote(&dir.display().to_string()).into_owned();
    println!("\nBuild it, submit a task and process it (see {cd}/README.md):");
    println!("  cd {cd}");
    println!("  cargo build");
    println!("  rex asynctask-submit {name} '{PAYLOAD}'");
    println!("  rex asynctask-workers --halt-when-empty");
    if let Some(exe) = not_on_path() {
        println!("(rex is not on your PATH: it is {})", exe.display());
    }
    Ok(0)
}

/// This rex's executable when `rex` on the PATH is not it (run from a source checkout as
/// `target/debug/rex`, say), so that the commands above would run another rex or none.
fn not_on_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .find_map(|dir| dir.join("rex").canonicalize().ok().filter(|p| p.is_file()));
    (on_path.as_ref() != Some(&exe)).then_some(exe)
}

/// The name becomes the package `rex.NAME`, the crate `rex_NAME` (so the library
/// `librex_NAME.so`, which is how rex finds the package), the queue and the worker's name: the
/// one spelling that is the same in all four.
fn check_name(name: &str) -> Result<()> {
    let rule = "a plugin name is lowercase ASCII letters, digits and underscores, starting with a letter (like acme_mail), at most 64 characters; the package is rex.NAME and the crate rex_NAME";
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        let hint = match name.strip_prefix("rex.") {
            Some(rest) => format!(" (without the rex. prefix: {rest})"),
            None => String::new(),
        };
        return Err(Error::new(format!(
            "invalid plugin name {name:?}: {rule}{hint}"
        )));
    }
    if crate::package::builtin(&format!("rex.{name}")).is_some() {
        return Err(Error::new(format!(
            "invalid plugin name {name:?}: rex.{name} is a package built into rex"
        )));
    }
    Ok(())
}

/// Refuses a directory that holds anything: plugin-new never overwrites a file.
fn check_unused(dir: &Path) -> Result<()> {
    let shown = dir.display();
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(Error::new(format!(
            "{shown} already exists and is not empty: plugin-new writes a new crate and overwrites nothing; give another --path"
        ))),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::new(format!(
            "{shown} already exists and is not a directory; give another --path"
        ))),
        Err(e) => Err(Error::new(format!("cannot read {shown}: {e}"))),
    }
}

/// `acme_mail` -> `AcmeMailWorker`: the worker's type, whose name is its logger's.
fn worker_type(name: &str) -> String {
    let mut out: String = name
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| part[..1].to_ascii_uppercase() + &part[1..])
        .collect();
    out.push_str("Worker");
    out
}

/// The `rex-plugin` dependency line. A rex run from its source checkout (`cargo run`,
/// `target/debug/rex`, `cargo install --path cli`) builds plugins against that checkout's SDK,
/// which is the ABI it speaks even between releases; any other rex against its own version.
fn sdk_dependency() -> String {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
    match sdk.join("Cargo.toml").is_file().then(|| sdk.canonicalize()) {
        Some(Ok(sdk)) => format!(
            "# The SDK of the rex source checkout that made this crate.\nrex-plugin = {{ path = {} }}",
            // A JSON string literal is a TOML basic string: same quotes, same escapes.
            serde_json::Value::from(sdk.display().to_string())
        ),
        _ => format!(
            "# The SDK of the rex that made this crate.\nrex-plugin = \"{}\"",
            crate::VERSION
        ),
    }
}

/// The placeholders of the templates and their values.
fn vars(name: &str) -> [(&'static str, String); 4] {
    [
        ("name", name.to_string()),
        ("worker_type", worker_type(name)),
        ("sdk_dependency", sdk_dependency()),
        ("payload", PAYLOAD.to_string()),
    ]
}

/// `template` with each `{{key}}` replaced by its value.
fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("acme_mail2").is_ok());
        for bad in [
            "",
            "Acme",
            "2acme",
            "acme-mail",
            "rex.acme",
            "acme.mail",
            "ctl",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(worker_type("acme_mail"), "AcmeMailWorker");
        assert_eq!(worker_type("a__b2"), "AB2Worker");
    }

    #[test]
    fn every_placeholder_is_substituted() {
        let vars = vars("acme");
        for (path, template) in FILES {
            let text = render(template, &vars);
            assert!(!text.contains("{{"), "{path}: {text}");
        }
    }
}
