#![no_main]
//! See `rex_cli::fuzzing::plugin_response`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rex_cli::fuzzing::plugin_response(data));
