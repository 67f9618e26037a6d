//! docs/writing-plugins.md as a plugin author follows it: its `Cargo.toml` and `src/lib.rs`
//! blocks make a crate that builds and whose unit test passes. The SDK's doc tests compile the
//! plugin code of the guide but not its `#[cfg(test)]` module; this runs it.

use std::path::Path;
use std::process::Command;

/// The text of the first block of `doc` fenced with ```` ```info ````.
fn block<'a>(doc: &'a str, info: &str) -> &'a str {
    let open = format!("```{info}\n");
    let start = doc.find(&open).expect("the block is in the guide") + open.len();
    let len = doc[start..].find("```").expect("the block ends");
    &doc[start..start + len]
}

#[test]
fn the_guide_crate_builds_and_its_unit_test_passes() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let guide =
        std::fs::read_to_string(workspace.join("docs/writing-plugins.md")).expect("read the guide");
    let toml = block(&guide, "toml");
    let sdk = workspace.join("plugins/sdk").display().to_string();
    let manifest = toml.replace("/path/to/rex/plugins/sdk", &sdk);
    assert_ne!(
        manifest, toml,
        "the guide names the SDK as /path/to/rex/plugins/sdk"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("src")).expect("create src/");
    // A workspace of its own, with this workspace's lock file: the same dependency versions,
    // so it builds offline.
    std::fs::write(dir.path().join("Cargo.toml"), manifest + "\n[workspace]\n")
        .expect("write Cargo.toml");
    std::fs::copy(workspace.join("Cargo.lock"), dir.path().join("Cargo.lock"))
        .expect("copy Cargo.lock");
    std::fs::write(
        dir.path().join("src/lib.rs"),
        block(&guide, "rust,standalone_crate"),
    )
    .expect("write src/lib.rs");

    // Built under target/guide, kept between runs.
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .join("guide");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--offline"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run cargo test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("welcomes_a_user_and_audits_it ... ok"),
        "cargo test of the guide's crate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
