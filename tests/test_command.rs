//! The README's test command, `scripts/test`: it is what `.ci/run` runs, it runs
//! `cargo test --workspace` with the arguments given, keeps the REX_TEST_* variables set, and
//! names what it did not test, so a run without the brokers does not look like a full one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

#[test]
fn the_readme_test_command_is_what_ci_runs() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("read README");
    let blocks: Vec<&str> = readme.split("```sh\n").skip(1).collect();
    assert_eq!(
        blocks.len(),
        2,
        "the README gives two commands: the demo and the tests"
    );
    assert!(blocks[1].starts_with("scripts/test\n```"), "{}", blocks[1]);
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).expect("read .ci/run");
    assert_eq!(ci.lines().last(), Some("scripts/test"));
}

#[test]
fn it_runs_cargo_test_and_names_the_backends_not_tested() {
    // A cargo that shows what it was given and fails, on the PATH first.
    let bin = tempfile::tempdir().expect("temp dir");
    let cargo = bin.path().join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\necho \"cargo $* redis=$REX_TEST_REDIS\"\nexit 3\n",
    )
    .expect("write cargo");
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(workspace().join("scripts/test"));
    cmd.args(["-p", "rex-cli"])
        .env("PATH", path)
        .env("REX_TEST_PGSQL", "postgresql://db/test")
        .env("REX_TEST_REDIS", "redis://cache/0")
        .env("REX_TEST_AMQP", "amqp://broker/%2f");
    for var in [
        "REX_TEST_PGSQL_TLS",
        "REX_TEST_REDIS_TLS",
        "REX_TEST_AMQP_TLS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run scripts/test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "cargo's status is the script's");
    assert_eq!(
        stdout,
        "cargo test --workspace -p rex-cli redis=redis://cache/0\n"
    );
    let tls =
        "NOT TESTED: the TLS tests of REX_TEST_PGSQL_TLS REX_TEST_REDIS_TLS REX_TEST_AMQP_TLS";
    assert!(
        stderr.lines().last().is_some_and(|l| l.starts_with(tls)),
        "the summary ends the run:\n{stderr}"
    );
    assert!(!stderr.contains("PostgreSQL ("), "{stderr}");
}
