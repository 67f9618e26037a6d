#![no_main]
//! See `rex_cli::fuzzing::uri`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rex_cli::fuzzing::uri(data));
