//! `rex plugin-new` as a newcomer uses it: in an empty directory, make a plugin, then run the
//! commands of its README as written (`cargo build`, `rex asynctask-submit ...`,
//! `rex asynctask-workers --halt-when-empty`) and its `cargo test`, and see the worker's log
//! line. Prints how long that took from `plugin-new` to the processed tasks.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

/// The text of the first ```` ```sh ```` block of `doc`.
fn sh_block(doc: &str) -> &str {
    let start = doc.find("```sh\n").expect("the README has a sh block") + "```sh\n".len();
    let len = doc[start..].find("```").expect("the block ends");
    &doc[start..start + len]
}

fn check(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    format!("{stdout}{stderr}")
}

#[test]
fn a_new_plugin_builds_tests_and_processes_a_task() {
    let rex = &rex_tests::artifacts().rex;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tmp = tempfile::tempdir().expect("temp dir");
    // rex, as a newcomer runs it: no plugin path or project from the test environment.
    let rex_in = |dir: &Path, args: &[String]| {
        let mut cmd = Command::new(rex);
        cmd.args(args)
            .current_dir(dir)
            .env_remove("REX_PLUGIN_PATH")
            .env_remove("REX_PROJECT")
            .env_remove("REX_PARAMETERS");
        cmd
    };

    let started = Instant::now();
    let out = check(
        "rex plugin-new acme_hello",
        rex_in(tmp.path(), &["plugin-new".into(), "acme_hello".into()])
            .output()
            .expect("run rex"),
    );
    assert!(out.contains("acme_hello/src/lib.rs"), "{out}");
    // This rex is not on the test's PATH: the commands it prints say which rex they mean.
    let exe = rex.canonicalize().expect("the rex binary");
    let note = format!("(rex is not on your PATH: it is {})", exe.display());
    assert!(out.contains(&note), "{out}");
    let crate_dir = tmp.path().join("acme_hello");

    // Offline, with this workspace's lock file (the same dependency versions), and its target/
    // where the generated crate's own `cargo build` puts it: target/ in the crate is a link to
    // target/plugin-new, kept between runs, so the SDK is not built again each time and rex
    // finds the library in target/debug as rex.yaml says.
    std::fs::copy(workspace.join("Cargo.lock"), crate_dir.join("Cargo.lock"))
        .expect("copy Cargo.lock");
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .join("plugin-new");
    std::fs::create_dir_all(&target).expect("create target/plugin-new");
    std::os::unix::fs::symlink(&target, crate_dir.join("target")).expect("link target/");
    let cargo_in = |args: &[String]| {
        let mut cmd = Command::new(&cargo);
        cmd.args(args)
            .arg("--offline")
            .current_dir(&crate_dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR");
        cmd
    };

    // The README's commands, each line as written, `rex` being the rex under test.
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).expect("read README.md");
    let mut output = String::new();
    for line in sh_block(&readme).lines() {
        let words = shell_words::split(line).expect("a shell command");
        let (program, args) = words.split_first().expect("a command");
        let mut cmd = match program.as_str() {
            "cargo" => cargo_in(args),
            "rex" => rex_in(&crate_dir, args),
            other => panic!("unexpected command {other} in the README"),
        };
        output += &check(line, cmd.output().expect("run a README command"));
    }
    let elapsed = started.elapsed();
    assert_eq!(
        output
            .matches("INFO:AcmeHelloWorker:Hello world! (attempt 1)")
            .count(),
        2,
        "the task and its requeued follow-up:\n{output}"
    );
    eprintln!(
        "plugin-new -> built -> task processed: {:.1}s",
        elapsed.as_secs_f64()
    );

    let out = check(
        "cargo test of the new plugin",
        cargo_in(&["test".into()]).output().expect("run cargo test"),
    );
    assert!(
        out.contains("greets_and_requeues_the_next_greeting ... ok"),
        "{out}"
    );
}
