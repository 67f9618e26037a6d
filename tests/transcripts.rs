//! Transcript tests: every `console` block in `tests/transcripts/*.md` and `docs/*.md` is run
//! with the real `rex` binary and demo plugin, and its output compared (stderr merged into
//! stdout, `[..]` matching any text within a line and `...` any lines).

#[test]
fn transcripts() {
    let artifacts = rex_tests::artifacts();
    let cases = || {
        let cases = trycmd::TestCases::new();
        cases.register_bin("rex", &artifacts.rex).env(
            "REX_PLUGIN_PATH",
            artifacts.plugin_dir.display().to_string(),
        );
        cases
    };
    // `plugin-new` and the guide that starts with it print the commands to run next: with
    // `rex` on the PATH being the rex under test, as for a user who installed it, they are
    // printed as a user sees them (plugin-new says so when `rex` is another one). A step's
    // own `PATH=...` would be overridden by this one, so the other transcripts (which set
    // their own PATH for `rex-<task>` programs) run apart.
    let bin = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(&artifacts.rex, bin.path().join("rex")).expect("link rex");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cases()
        .env("PATH", path)
        .case("transcripts/plugin-new.md")
        .case("../docs/*.md")
        .run();
    cases()
        .case("transcripts/*.md")
        .skip("transcripts/plugin-new.md")
        .run();
}
