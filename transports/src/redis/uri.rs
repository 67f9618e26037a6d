//! URIs: parsing a `redis://`, `rediss://` or `redis+unix://` URI into what the `redis` crate
//! is given (without `key_prefix`, with the TLS parameters read), the key prefix, the text
//! shown by `describe` and in errors (passwords redacted), and the secrets to scrub.

pub(super) use crate::tls::{TlsSettings, Verify};
use crate::uri::percent_decode;
use crate::{Result, TransportError, validate_queue_name};

/// The key prefix when the URI names none.
const DEFAULT_PREFIX: &str = "rex";

/// The parts of a transport URI.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ParsedUri {
    /// The URI for the `redis` crate: without `key_prefix`.
    pub(super) connect: String,
    pub(super) prefix: String,
    /// The URI without `key_prefix`, with its passwords replaced by `***`.
    pub(super) display: String,
    pub(super) secrets: Vec<String>,
    /// For `rediss://`: what to trust and check.
    pub(super) tls: Option<TlsSettings>,
}

pub(super) fn parse_uri(uri: &str) -> Result<ParsedUri> {
    let invalid = |reason: String| TransportError::InvalidUri {
        uri: crate::redact_uri(uri),
        reason,
    };
    let (body, fragment) = match uri.split_once('#') {
        Some((body, fragment)) => (body, Some(fragment)),
        None => (uri, None),
    };
    let (base, query) = body.split_once('?').unwrap_or((body, ""));
    let mut prefix = None;
    let mut kept = Vec::new();
    let mut shown = Vec::new();
    let (mut ca, mut cert, mut key, mut verify) = (None, None, None, Verify::Full);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_decode(value)
                .ok_or_else(|| invalid(format!("{name} is not properly percent-encoded")))
        };
        match name {
            "key_prefix" => {
                if prefix.replace(value).is_some() {
                    return Err(invalid("key_prefix is given twice".to_string()));
                }
                continue;
            }
            "ssl_ca_certs" => ca = Some(decoded()?),
            "ssl_certfile" => cert = Some(decoded()?),
            "ssl_keyfile" => key = Some(decoded()?),
            "ssl_cert_reqs" => {
                verify = match value {
                    "required" => Verify::Full,
                    "none" => Verify::Nothing,
                    _ => {
                        return Err(invalid(format!(
                            "ssl_cert_reqs={value}: expected required (the default) or none"
                        )));
                    }
                }
            }
            _ => {
                kept.push(pair);
                shown.push(pair);
                continue;
            }
        }
        shown.push(pair);
    }
    let tls = if base.starts_with("rediss://") {
        Some(
            TlsSettings::from_files(
                verify,
                ("ssl_ca_certs", ca.as_deref()),
                ("ssl_certfile", cert.as_deref()),
                ("ssl_keyfile", key.as_deref()),
            )
            .map_err(&invalid)?,
        )
    } else {
        if ca.is_some() || cert.is_some() || key.is_some() || verify != Verify::Full {
            return Err(invalid(
                "the ssl_* parameters need TLS: use rediss://".to_string(),
            ));
        }
        None
    };
    let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
    if validate_queue_name(prefix).is_err() {
        return Err(invalid(format!(
            "key_prefix \"{prefix}\" must be spelled like a queue name (lowercase letters, digits and single underscores)"
        )));
    }
    let mut connect = base.to_string();
    if !kept.is_empty() {
        connect = format!("{connect}?{}", kept.join("&"));
    }
    let mut display = base.to_string();
    if !shown.is_empty() {
        display = format!("{display}?{}", shown.join("&"));
    }
    match fragment {
        Some(fragment) => {
            connect = format!("{connect}#{fragment}");
            display = format!("{display}#{fragment}");
        }
        // How the `redis` crate is told not to check the server's certificate.
        None if tls
            .as_ref()
            .is_some_and(|tls| tls.verify == Verify::Nothing) =>
        {
            connect = format!("{connect}#insecure");
        }
        None => {}
    }
    let mut secrets: Vec<String> = base
        .split_once("://")
        .map(|(_, rest)| &rest[..rest.find('/').unwrap_or(rest.len())])
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_string())
        .into_iter()
        .collect();
    for pair in &kept {
        if let Some(("pass" | "password", value)) = pair.split_once('=') {
            secrets.push(value.to_string());
        }
    }
    secrets.retain(|secret| !secret.is_empty());
    Ok(ParsedUri {
        display: crate::redact_uri(&display),
        connect,
        prefix: prefix.to_string(),
        secrets,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_lose_their_key_prefix_and_secrets() {
        let parsed =
            parse_uri("redis://u:s3cret@host:6380/2?key_prefix=app_one&protocol=resp3").unwrap();
        assert_eq!(
            parsed,
            ParsedUri {
                connect: "redis://u:s3cret@host:6380/2?protocol=resp3".to_string(),
                prefix: "app_one".to_string(),
                display: "redis://u:***@host:6380/2?protocol=resp3".to_string(),
                secrets: vec!["s3cret".to_string()],
                tls: None,
            }
        );
        let parsed = parse_uri("redis+unix:///run/redis.sock?db=3&pass=hush").unwrap();
        assert_eq!(parsed.prefix, "rex");
        assert_eq!(parsed.display, "redis+unix:///run/redis.sock?db=3&pass=***");
        assert_eq!(parsed.secrets, ["hush"]);
        assert_eq!(
            parse_uri("redis://h?key_prefix=abc").unwrap().connect,
            "redis://h"
        );
        for bad in [
            "redis://h?key_prefix=",
            "redis://h?key_prefix=Bad",
            "redis://h?key_prefix=a:b",
            "redis://h?key_prefix=ab&key_prefix=cd",
        ] {
            assert!(
                matches!(parse_uri(bad), Err(TransportError::InvalidUri { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn tls_parameters() {
        let parsed = parse_uri("rediss://h:6390/0").unwrap();
        assert_eq!(parsed.tls.unwrap().verify, Verify::Full);
        assert_eq!(parsed.connect, "rediss://h:6390/0");
        let parsed = parse_uri("rediss://h/0?ssl_cert_reqs=none&key_prefix=ab").unwrap();
        assert_eq!(parsed.tls.unwrap().verify, Verify::Nothing);
        assert_eq!(parsed.connect, "rediss://h/0#insecure");
        assert_eq!(parsed.display, "rediss://h/0?ssl_cert_reqs=none");
        let reason = |uri: &str| match parse_uri(uri) {
            Err(TransportError::InvalidUri { reason, .. }) => reason,
            other => panic!("{uri}: {other:?}"),
        };
        assert!(reason("redis://h?ssl_cert_reqs=none").contains("use rediss://"));
        assert!(reason("rediss://h?ssl_cert_reqs=maybe").contains("expected required"));
        assert!(
            reason("rediss://h?ssl_ca_certs=/nonexistent.pem")
                .starts_with("ssl_ca_certs=/nonexistent.pem: ")
        );
        assert_eq!(
            reason("rediss://h?ssl_keyfile=/k.pem"),
            "ssl_certfile and ssl_keyfile go together"
        );
    }
}
