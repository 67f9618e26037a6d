//! What the real-server tests of the networked transports share.

/// The server named by the environment variable `var`, or `None` (the test is then skipped).
pub fn server(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|uri| !uri.is_empty())
}

/// A key prefix (or schema suffix) no other test run uses: `rex_test_<random>`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn unique_prefix() -> String {
    rex_transport::conformance::unique("rex_test")
}

/// `uri` with one more query parameter.
pub fn with_param(uri: &str, name: &str, value: &str) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{name}={value}")
}
