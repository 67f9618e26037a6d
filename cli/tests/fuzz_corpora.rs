//! Every input the fuzzers kept (`fuzz/corpus/<target>/`) and every input that once crashed or
//! stalled one (`fuzz/regressions/<target>/`, kept by name) replayed through the same entry
//! points: a crash a fuzzer once found stays fixed, without libFuzzer in the build.

use std::path::{Path, PathBuf};

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_corpus_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (target, run) in rex_cli::fuzzing::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        assert!(!corpus.is_empty(), "no corpus for {target}");
        let regressions = inputs(&root.join("regressions").join(target));
        for input in corpus.iter().chain(&regressions) {
            let data = std::fs::read(input).expect("read corpus input");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panics on {}", input.display());
        }
    }
}
