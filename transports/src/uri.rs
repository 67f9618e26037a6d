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
    // The query first: an `@` in it must not be taken for the end of a user part.
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let base = match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
            None => format!("{scheme}://{rest}"),
        },
        None => format!("{scheme}://{rest}"),
    };
    let Some(query) = query else {
        return base;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// Query parameters that carry a secret: `password`, `sslpassword`, `pass`, `token`,
/// `secret`, `auth`, in any case.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
        || name == "auth"
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
            (
                "postgresql://h/db?sslpassword=k&PassWord=p&auth_token=t&sslmode=require",
                "postgresql://h/db?sslpassword=***&PassWord=***&auth_token=***&sslmode=require",
            ),
            (
                "redis://h:6379/0?auth=s3cret&note=a@b:c",
                "redis://h:6379/0?auth=***&note=a@b:c",
            ),
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
