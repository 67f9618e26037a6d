//! Command-line behaviours a transcript cannot show, such as the exact version.

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
