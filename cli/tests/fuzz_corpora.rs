//! Every input the fuzzers kept (`fuzz/corpus/<target>/`) replayed through the same entry
//! points: a crash a fuzzer once found stays fixed, without libFuzzer in the build.

use std::path::Path;

#[test]
fn every_corpus_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, run) in rex_cli::fuzzing::TARGETS {
        let dir = root.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|entry| entry.path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no corpus for {target}");
        for input in inputs {
            let data = std::fs::read(&input).expect("read corpus input");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panics on {}", input.display());
        }
    }
}
