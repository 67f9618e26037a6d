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
