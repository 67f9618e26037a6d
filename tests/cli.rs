//! Command-line behaviours a transcript cannot show: the exact version, and commands run from
//! another directory than the sandbox root.

use rex_tests::Project;

/// `rex --version` and `rex -V` print the version of the rex-cli crate (the workspace's version,
/// which this crate shares).
#[test]
fn version() {
    let project = Project::demo();
    let expected = format!("rex {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(project.ok(&["--version"]), expected);
    assert_eq!(project.ok(&["-V"]), expected);
}

/// A task submitted from a subdirectory lands in the project's database: rex takes the nearest
/// directory holding a `rex.yaml` as the project root, as cargo and git find their manifests.
#[test]
fn a_subdirectory_works_on_the_project_at_its_root() {
    let project = Project::demo();
    let sub = project.path().join("src").join("deep");
    std::fs::create_dir_all(&sub).expect("create a subdirectory");
    let status = project
        .rex(&["asynctask-submit", "foo", r#"{"n": 1}"#])
        .current_dir(&sub)
        .status()
        .expect("run rex");
    assert!(
        status.success(),
        "asynctask-submit in a subdirectory failed"
    );
    assert_eq!(project.counts("foo"), (1, 0, 0), "seen from the root");
    assert!(
        !sub.join(".rex").exists(),
        "nothing is written in the subdirectory"
    );
}

/// Without a `rex.yaml` anywhere up the tree, an explicit project works in the current
/// directory, as before.
#[test]
fn an_explicit_project_works_without_rex_yaml() {
    let project = Project::new("");
    std::fs::remove_file(project.path().join("rex.yaml")).expect("remove rex.yaml");
    project.ok(&[
        "asynctask-submit",
        "foo",
        "{}",
        "--project=rex.asynctask_demo",
    ]);
    assert!(project.path().join(".rex/asynctask.db").exists());
    let out = project.ok(&["asynctask-queues", "--project=rex.asynctask_demo", "--json"]);
    assert!(out.contains(r#""queue":"foo""#), "{out}");
}

/// `rex completions bash` is valid bash naming every task, and its project-dependent part
/// completes the demo project's queue from `rex __complete queues`.
#[test]
fn shell_completions() {
    let project = Project::demo();
    let bash = project.ok(&["completions", "bash"]);
    let tasks = [
        "asynctask-workers",
        "asynctask-submit",
        "plugin-list",
        "plugin-check",
        "completions",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let script = project.ok(&["completions", shell]);
        for task in tasks {
            assert!(script.contains(task), "{shell} script lacks {task}");
        }
        assert!(
            script.contains("halt-when-empty"),
            "{shell} script lacks options"
        );
    }
    assert_eq!(project.ok(&["__complete", "queues"]), "foo\n");
    assert!(
        project
            .ok(&["__complete", "workers"])
            .contains("demo_foo_worker\n")
    );
    assert!(
        project
            .ok(&["__complete", "tasks"])
            .contains("demo-noisy-task\n")
    );
    let script = project.path().join("rex.bash");
    std::fs::write(&script, &bash).expect("write the script");
    let rex = rex_tests::artifacts().rex.display().to_string();
    let bash_run = |code: &str| {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(code)
            .current_dir(project.path())
            .env("REX_PLUGIN_PATH", &rex_tests::artifacts().plugin_dir)
            .output()
    };
    let Ok(checked) = bash_run("bash -n rex.bash") else {
        eprintln!("no bash: only the script's contents were checked");
        return;
    };
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // What bash does on <TAB> after `rex asynctask-submit `, and after `rex plugin-l` (the
    // arguments are the command, the word completed and the one before, as bash passes them).
    let out = bash_run(&format!(
        "source rex.bash; COMP_WORDS=({rex} asynctask-submit ''); COMP_CWORD=2; _rex_project {rex} '' asynctask-submit; echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=({rex} plugin-l); COMP_CWORD=1; COMP_LINE='rex plugin-l'; COMP_POINT=12; _rex_project {rex} plugin-l {rex}; echo \"${{COMPREPLY[@]}}\""
    ))
    .expect("run bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "foo\nplugin-list\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rex help --man` is a roff page naming every task and setting, which `man` renders.
#[test]
fn man_page() {
    let project = Project::demo();
    let page = project.ok(&["help", "--man"]);
    // clap_mangen's page opens with the definition of a quote string (`.ie`/`.el`), then `.TH`.
    let head = page
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"));
    assert!(
        head.is_some_and(|l| l.starts_with(".TH rex 1")),
        "{}",
        &page[..page.len().min(200)]
    );
    for name in [
        "asynctask-workers",
        "plugin-list",
        "completions",
        "asynctask_workers",
    ] {
        // Minus signs are `\-` in roff.
        assert!(
            page.replace("\\-", "-").contains(name),
            "the man page lacks {name}"
        );
    }
    let path = project.path().join("rex.1");
    std::fs::write(&path, &page).expect("write the page");
    // `man -l` needs man-db and groff; without them only the text is checked.
    let Ok(out) = std::process::Command::new("man")
        .args(["-l", "--warnings", "rex.1"])
        .current_dir(project.path())
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    else {
        eprintln!("no man: only the page's text was checked");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man -l failed: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("plugin-check"));
    assert!(stderr.trim().is_empty(), "man warns: {stderr}");
}

/// `rex asynctask-dashboard` refuses a non-loopback address without a token, before binding.
#[test]
fn the_dashboard_needs_a_token_off_loopback() {
    let project = Project::demo();
    let out = project
        .rex(&["asynctask-dashboard", "--bind=0.0.0.0:0"])
        .env_remove("REX_DASHBOARD_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run rex");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("FATAL ERROR: binding 0.0.0.0:0, which is not a loopback address, needs an access token (--token or REX_DASHBOARD_TOKEN)"),
        "{err}"
    );
}

/// The dashboard announces its real port, answers over HTTP, and exits 0 on SIGTERM.
#[test]
fn the_dashboard_serves_and_stops_on_sigterm() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let project = Project::demo();
    project.submit("foo", &[r#"{"n": 1}"#]);
    let mut running = rex_tests::Running::spawn(project.rex(&[
        "asynctask-dashboard",
        "--bind=127.0.0.1:0",
        "--read-only",
    ]));
    let line = running.wait_for(Duration::from_secs(30), |l| {
        l.starts_with("Console listening on http://")
    });
    let addr = line
        .trim_start_matches("Console listening on http://")
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /api/queues HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""queue":"foo""#), "{reply}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let (code, lines) = running.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{lines:?}");
}
