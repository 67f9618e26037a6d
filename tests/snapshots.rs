//! Insta snapshots of help texts and error messages: any change to what users read shows up as
//! a reviewed snapshot diff (`INSTA_UPDATE=always cargo test -p rex-tests --test snapshots`).

use rex_tests::Project;

/// stdout of a successful `rex <args>`.
fn help(project: &Project, args: &[&str]) -> String {
    project.ok(args)
}

/// stderr of a failing `rex <args>`, which must exit with status 1.
fn error(project: &Project, args: &[&str]) -> String {
    let (code, out, err) = project.run(args);
    assert_eq!(code, 1, "rex {args:?} should fail:\n{out}\n{err}");
    assert!(err.starts_with("FATAL ERROR: "), "{err}");
    // The plugin directory is machine-specific.
    let err = err
        .replace(
            &rex_tests::artifacts().plugin_dir.display().to_string(),
            "[PLUGINS]",
        )
        .replace(&project.path().display().to_string(), "[PROJECT]");
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() => err.replace(&home, "[HOME]"),
        _ => err,
    }
}

#[test]
fn help_texts() {
    let project = Project::demo();
    insta::assert_snapshot!("help", help(&project, &["help"]));
    for task in [
        "settings",
        "plugin-new",
        "asynctask-workers",
        "asynctask-submit",
        "asynctask-queues",
        "asynctask-failed",
        "asynctask-retry",
        "asynctask-purge",
        "asynctask-pause",
        "asynctask-resume",
        "asynctask-show",
        "asynctask-masters",
        "asynctask-process",
        "asynctask-dashboard",
        "plugin-list",
        "plugin-check",
        "completions",
        "demo-noisy-task",
    ] {
        insta::assert_snapshot!(format!("help-{task}"), help(&project, &["help", task]));
        assert_eq!(
            help(&project, &[task, "--help"]),
            help(&project, &["help", task]),
            "rex {task} --help"
        );
    }
    insta::assert_snapshot!(
        "help-setting-asynctask_workers",
        help(&project, &["help", "asynctask_workers"])
    );
    insta::assert_snapshot!(
        "settings-defaults",
        help(&project, &["settings", "--defaults"])
    );
}

#[test]
fn error_messages() {
    let project = Project::demo();
    let cases: &[(&str, &[&str])] = &[
        ("unknown-task", &["frobnicate"]),
        ("unknown-help-topic", &["help", "frobnicate"]),
        ("toggle-with-value", &["asynctask-workers", "--quiet=yes"]),
        ("missing-package", &["asynctask-workers", "rex.nope"]),
        ("bad-abi", &["asynctask-workers", "rex.bad_abi"]),
        (
            "unknown-worker",
            &[
                "asynctask-workers",
                r#"--set=asynctask_workers={"foo": "nope"}"#,
            ],
        ),
        (
            "bad-record-field",
            &[
                "asynctask-workers",
                r#"--set=asynctask_workers={"foo": {"worker": "demo_foo_worker", "colour": "red"}}"#,
            ],
        ),
        (
            "record-without-worker",
            &[
                "asynctask-workers",
                r#"--set=asynctask_workers={"foo": {"max_attempts": 2}}"#,
            ],
        ),
        (
            "bad-duration",
            &[
                "asynctask-workers",
                r#"--set=asynctask_workers={"foo": {"worker": "demo_foo_worker", "timeout": "soon"}}"#,
            ],
        ),
        (
            "bad-transport",
            &[
                "asynctask-queues",
                "--set=asynctask_transport=carrier-pigeon://coop",
            ],
        ),
        (
            "tls-missing-ca-file",
            &[
                "asynctask-queues",
                "--set=asynctask_transport=rediss://localhost/0?ssl_ca_certs=/nonexistent/ca.pem",
            ],
        ),
        (
            "tls-not-a-certificate",
            &[
                "asynctask-queues",
                "--set=asynctask_transport=postgresql://rex:s3cret@db/jobs?sslmode=verify-full&sslrootcert=rex.yaml",
            ],
        ),
        (
            "tls-key-without-certificate",
            &[
                "asynctask-queues",
                "--set=asynctask_transport=amqps://rex:s3cret@mq/%2f?keyfile=rex.yaml",
            ],
        ),
        (
            "tls-verification-off",
            &[
                "asynctask-queues",
                "--set=asynctask_transport=amqps://rex:s3cret@mq/%2f?verify=verify_none",
            ],
        ),
        ("retry-without-selector", &["asynctask-retry"]),
        ("unknown-shell", &["completions", "powershell"]),
        ("purge-without-queue", &["asynctask-purge"]),
        (
            "bad-delay",
            &["asynctask-submit", "foo", "{}", "--delay=later"],
        ),
        (
            "bad-yaml-set",
            &["settings", "--set=asynctask_workers={foo: [}"],
        ),
    ];
    for (name, args) in cases {
        insta::assert_snapshot!(format!("error-{name}"), error(&project, args));
    }
}

#[test]
fn a_broken_rex_yaml_is_reported_with_its_path() {
    let project = Project::new("project: [rex.asynctask_demo\n");
    insta::assert_snapshot!("error-broken-rex-yaml", error(&project, &["settings"]));
    let project = Project::new("");
    std::fs::remove_file(project.path().join("rex.yaml")).expect("remove rex.yaml");
    insta::assert_snapshot!("error-no-project", error(&project, &["asynctask-workers"]));
}
