//! Transcript tests: every `console` block in `tests/transcripts/*.md` and `docs/*.md` is run
//! with the real `rex` binary and demo plugin, and its output compared (stderr merged into
//! stdout, `[..]` matching any text within a line and `...` any lines).

#[test]
fn transcripts() {
    let artifacts = rex_tests::artifacts();
    trycmd::TestCases::new()
        .register_bin("rex", &artifacts.rex)
        .env(
            "REX_PLUGIN_PATH",
            artifacts.plugin_dir.display().to_string(),
        )
        .case("transcripts/*.md")
        .case("../docs/*.md")
        .run();
}
