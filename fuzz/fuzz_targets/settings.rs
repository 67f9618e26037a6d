#![no_main]
//! See `rex_cli::fuzzing::settings`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rex_cli::fuzzing::settings(data));
