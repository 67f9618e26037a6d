//! Transcript tests: every `console` block in `tests/transcripts/*.md` and `docs/*.md` is run
//! with the real `rex` binary and demo plugin, and its output compared (stderr merged into
//! stdout, `[..]` matching any text within a line and `...` any lines).

#[test]
fn transcripts() {
    let artifacts = rex_tests::artifacts();
    // `rex` on the PATH is the rex under test, as for a user who installed it (plugin-new
    // says so when it is not).
    let bin = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(&artifacts.rex, bin.path().join("rex")).expect("link rex");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    trycmd::TestCases::new()
        .register_bin("rex", &artifacts.rex)
        .env("PATH", path)
        .env(
            "REX_PLUGIN_PATH",
            artifacts.plugin_dir.display().to_string(),
        )
        .case("transcripts/*.md")
        .case("../docs/*.md")
        .run();
}
