//! URI and secret helpers every backend shares: redaction for display, percent-coding of URI
//! parts, and scrubbing secrets out of a client library's error text.

/// A URI fit to show: the password of `scheme://user:password@host/...` and any `pass=` or
/// `password=` query parameter replaced by `***`; other URIs unchanged.
///
/// The user information ends at the *last* `@`, so a password holding an unescaped `@`, `/`
/// or `?` stays hidden whole (hiding too much is the safe side for a display form).
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let shown = match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
            None => uri.to_string(),
        },
        None => uri.to_string(),
    };
    let Some((base, query)) = shown.split_once('?') else {
        return shown;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name @ ("pass" | "password"), _)) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// `%XX` sequences of a URI part decoded (as UTF-8); `None` when malformed.
#[cfg_attr(not(feature = "network"), allow(dead_code))]
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Every byte but RFC 3986's unreserved characters as `%XX`: a value safe in any URI part.
#[cfg_attr(not(feature = "pgsql"), allow(dead_code))]
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `message` with every secret (password, token) replaced by `***`: client libraries quote
/// what they were given in their errors, and errors end up in logs.
#[cfg_attr(not(any(feature = "redis", feature = "amqp")), allow(dead_code))]
pub(crate) fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(message.to_string(), |message, secret| {
            message.replace(secret.as_str(), "***")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (uri, shown) in [
            ("postgresql://u:s3cret@h/db", "postgresql://u:***@h/db"),
            (
                "amqp://guest:p@ss/word@h:5672/%2f",
                "amqp://guest:***@h:5672/%2f",
            ),
            (
                "redis://h:6379/0?password=s3cret&db=1",
                "redis://h:6379/0?password=***&db=1",
            ),
            ("redis://:s3cret@h?pass=x", "redis://:***@h?pass=***"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            ("sqlite:/tmp/a.db", "sqlite:/tmp/a.db"),
        ] {
            assert_eq!(redact_uri(uri), shown, "{uri}");
        }
    }

    #[test]
    fn percent_coding_round_trips() {
        let text = "p@ss wörd/%";
        assert_eq!(percent_encode(text), "p%40ss%20w%C3%B6rd%2F%25");
        assert_eq!(percent_decode(&percent_encode(text)).as_deref(), Some(text));
        assert_eq!(percent_decode("%zz"), None);
    }

    #[test]
    fn secrets_are_scrubbed() {
        let secrets = ["hush".to_string(), String::new()];
        assert_eq!(
            scrub("AUTH failed for hush", &secrets),
            "AUTH failed for ***"
        );
    }
}
