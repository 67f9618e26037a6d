//! What the real-server tests of the networked transports share.

/// The server named by the environment variable `var`, or `None` (the test is then skipped).
pub fn server(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|uri| !uri.is_empty())
}

/// A key prefix (or schema suffix) no other test run uses: `rex_test_<random>`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn unique_prefix() -> String {
    rex_transport_conformance::unique("rex_test")
}

/// `uri` with one more query parameter.
pub fn with_param(uri: &str, name: &str, value: &str) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{name}={value}")
}

/// `uri` without the query parameters named in `names`.
fn without_params(uri: &str, names: &[&str]) -> String {
    let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            !names
                .iter()
                .any(|name| pair.starts_with(&format!("{name}=")))
        })
        .collect();
    format!("{base}?{}", kept.join("&"))
}

/// Against a TLS `server` that requires client certificates: without the CA parameter `ca`
/// the server's certificate is refused; without the client certificate parameters
/// `identity` the server refuses the client. Both are connection failures: retryable.
#[allow(dead_code)] // not every test binary uses every helper
pub async fn tls_checks_both_ends(server: &str, ca: &str, identity: [&str; 2]) {
    let untrusted = rex_transport::open(&without_params(server, &[ca])).expect("open");
    let err = untrusted.counts("foo").await.expect_err("an unknown CA");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );

    let anonymous = rex_transport::open(&without_params(server, &identity)).expect("open");
    let err = anonymous
        .counts("foo")
        .await
        .expect_err("no client certificate");
    assert!(err.is_retryable(), "{err}");
}
