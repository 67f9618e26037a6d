//! Parsing `amqp://` and `amqps://` URIs (see the module docs for their shape) into the
//! settings of a transport: lapin's connection URI, the TLS configuration, the object-name
//! prefix, the display form without secrets, and the secrets themselves, which [`scrub`](crate::uri::scrub)
//! removes from every error message.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};

use super::runtimes::MAX_RUNTIMES;
use super::{AmqpTransport, IdState, Inner, TRANSPORT, lease};
use crate::runtime_cache::PerRuntime;
use crate::tls::{TlsSettings, Verify};
use crate::uri::percent_decode;
use crate::{Result, TransportError, validate_queue_name};

/// The object-name prefix when the URI names none.
const DEFAULT_PREFIX: &str = "rex";

/// Connecting (TCP and AMQP handshake) gives up after this long, unless the URI says otherwise.
const CONNECT_TIMEOUT_MS: u64 = 2000;

/// AMQP heartbeat in seconds, unless the URI says otherwise: a dead peer is noticed within
/// about twice this. Not lower: a worker's connection is driven by its runtime only between
/// tasks, so a payload that runs longer than about twice this loses its connection (and the
/// broker hands its task out again).
const HEARTBEAT_S: u16 = 10;
/// The largest frame asked for (the broker may lower it; RabbitMQ offers 128 KiB). The AMQP
/// client keeps two buffers of 32 frames each, resident from the start: 8 MiB at 128 KiB, a
/// child's largest allocation. Tasks are small, and a larger payload is simply sent in more
/// frames.
const FRAME_MAX: u32 = 16 * 1024;

/// The parts of a transport URI.
pub(super) struct ParsedUri {
    pub(super) uri: AMQPUri,
    pub(super) prefix: String,
    /// The URI without `prefix` and with the password replaced by `***`.
    pub(super) display: String,
    pub(super) secrets: Vec<String>,
    /// For `amqps://`: the roots and client certificate (checks are always full).
    pub(super) tls: Option<OwnedTLSConfig>,
    pub(super) connect_timeout: Duration,
}

pub(super) fn parse_uri(uri: &str) -> Result<ParsedUri> {
    let redacted = crate::redact_uri(uri);
    let invalid = |reason: String| TransportError::InvalidUri {
        uri: redacted.clone(),
        reason,
    };
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| invalid("expected amqp://".to_string()))?;
    let tls = match scheme {
        "amqp" => false,
        "amqps" => true,
        _ => return Err(invalid("expected amqp:// or amqps://".to_string())),
    };
    let rest = rest.split_once('#').map_or(rest, |(rest, _)| rest);
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));

    let mut prefix = None;
    let mut kept = Vec::new();
    let mut params = AMQPQueryString::default();
    let (mut cacertfile, mut certfile, mut keyfile) = (None, None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let path = || {
            percent_decode(value)
                .ok_or_else(|| invalid(format!("{name} is not properly percent-encoded")))
        };
        let number = |what: &str| -> Result<u64> {
            value.parse::<u64>().map_err(|_| {
                invalid(format!(
                    "{what} must be a non-negative integer, not \"{value}\""
                ))
            })
        };
        let too_big = |what: &str| invalid(format!("{what} = {value} is too large"));
        match name {
            "prefix" => {
                if prefix.replace(value).is_some() {
                    return Err(invalid("prefix is given twice".to_string()));
                }
                continue;
            }
            "heartbeat" => {
                params.heartbeat = Some(u16::try_from(number(name)?).map_err(|_| too_big(name))?);
            }
            "connection_timeout" => params.connection_timeout = Some(number(name)?),
            "frame_max" => {
                params.frame_max = Some(u32::try_from(number(name)?).map_err(|_| too_big(name))?);
            }
            "channel_max" => {
                params.channel_max = Some(u16::try_from(number(name)?).map_err(|_| too_big(name))?);
            }
            "cacertfile" => cacertfile = Some(path()?),
            "certfile" => certfile = Some(path()?),
            "keyfile" => keyfile = Some(path()?),
            "verify" if value == "verify_peer" => {}
            "verify" => {
                return Err(invalid(format!(
                    "verify={value}: only verify_peer is supported; give the broker's CA with cacertfile"
                )));
            }
            other => {
                return Err(invalid(format!(
                    "unknown parameter \"{other}\" (accepted: prefix, heartbeat, connection_timeout, frame_max, channel_max, cacertfile, certfile, keyfile, verify)"
                )));
            }
        }
        kept.push(pair);
    }
    let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
    if validate_queue_name(prefix).is_err() {
        return Err(invalid(format!(
            "prefix \"{prefix}\" must be spelled like a queue name (lowercase letters, digits and single underscores)"
        )));
    }
    let tls = if tls {
        let settings = TlsSettings::from_files(
            Verify::Full,
            ("cacertfile", cacertfile.as_deref()),
            ("certfile", certfile.as_deref()),
            ("keyfile", keyfile.as_deref()),
        )
        .map_err(&invalid)?;
        Some(OwnedTLSConfig {
            identity: settings.identity.map(|(pem, key)| OwnedIdentity::PKCS8 {
                pem: pem.into_bytes(),
                key: key.into_bytes(),
            }),
            cert_chain: settings.roots,
        })
    } else {
        if cacertfile.is_some() || certfile.is_some() || keyfile.is_some() {
            return Err(invalid(
                "cacertfile, certfile and keyfile need TLS: use amqps://".to_string(),
            ));
        }
        None
    };

    let (authority, path) = match base.find('/') {
        Some(slash) => (&base[..slash], &base[slash..]),
        None => (base, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let default_user = AMQPUserInfo::default();
    let (username, password) = match userinfo {
        None => (default_user.username, default_user.password),
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let user = percent_decode(user)
                .ok_or_else(|| invalid("the user name is not properly percent-encoded".into()))?;
            let password = match password {
                Some(password) => percent_decode(password).ok_or_else(|| {
                    invalid("the password is not properly percent-encoded".into())
                })?,
                None => String::new(),
            };
            (user, password)
        }
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("unterminated [IPv6 address]".to_string()))?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        percent_decode(host).ok_or_else(|| invalid("bad host".to_string()))?
    };
    let port = match port {
        None | Some("") => {
            if tls.is_some() {
                5671
            } else {
                5672
            }
        }
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| invalid(format!("bad port \"{port}\"")))?,
    };
    let vhost = match path {
        "" | "/" => "/".to_string(),
        path => {
            let encoded = &path[1..];
            if encoded.contains('/') {
                return Err(invalid(
                    "the virtual host must be percent-encoded (%2f for /)".to_string(),
                ));
            }
            percent_decode(encoded)
                .ok_or_else(|| invalid("the virtual host is not properly percent-encoded".into()))?
        }
    };
    let connect_timeout =
        Duration::from_millis(params.connection_timeout.unwrap_or(CONNECT_TIMEOUT_MS));
    params.connection_timeout = Some(params.connection_timeout.unwrap_or(CONNECT_TIMEOUT_MS));
    params.heartbeat = Some(params.heartbeat.unwrap_or(HEARTBEAT_S));
    params.frame_max = Some(params.frame_max.unwrap_or(FRAME_MAX));

    let mut shown = format!("{scheme}://{base}");
    if !kept.is_empty() {
        shown = format!("{shown}?{}", kept.join("&"));
    }
    let mut secrets = Vec::new();
    if let Some((_, raw)) = userinfo.and_then(|userinfo| userinfo.split_once(':')) {
        secrets.push(raw.to_string());
    }
    secrets.push(password.clone());
    secrets.retain(|secret| !secret.is_empty());
    secrets.dedup();
    Ok(ParsedUri {
        uri: AMQPUri {
            scheme: if tls.is_some() {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username, password },
                host,
                port,
            },
            vhost,
            query: params,
        },
        prefix: prefix.to_string(),
        display: crate::redact_uri(&shown),
        secrets,
        tls,
        connect_timeout,
    })
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the display form: the URI itself holds the password.
        f.debug_tuple("AmqpTransport")
            .field(&self.inner.display)
            .finish()
    }
}

impl Inner {
    /// The state of a transport opened on `parsed`, not connected yet.
    pub(super) fn new(parsed: ParsedUri) -> Self {
        Inner {
            display: format!("{TRANSPORT}({}, prefix {})", parsed.display, parsed.prefix),
            uri: parsed.uri,
            tls: parsed.tls,
            prefix: parsed.prefix,
            secrets: parsed.secrets,
            connect_timeout: parsed.connect_timeout,
            runtimes: PerRuntime::new(MAX_RUNTIMES),
            declared: Mutex::new(HashSet::new()),
            registered: Mutex::new(HashSet::new()),
            registry_declared: AtomicBool::new(false),
            fires: Mutex::new(HashSet::new()),
            schedule_flags: Mutex::new(HashSet::new()),
            keys: Mutex::new(HashSet::new()),
            leases: Mutex::new(HashMap::new()),
            given_up: Mutex::new(HashMap::new()),
            acked: Mutex::new(VecDeque::with_capacity(lease::MAX_RECENT_ACKS)),
            unseen_gets: AtomicU32::new(0),
            ids: Mutex::new(IdState::new()),
            blocked_waiters: AtomicUsize::new(0),
            pauses: Mutex::new(HashMap::new()),
            masters_declared: AtomicBool::new(false),
            history_declared: AtomicBool::new(false),
            schedules_declared: AtomicBool::new(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use crate::amqp::AmqpTransport;

    #[test]
    fn secrets_stay_out_of_debug_and_describe() {
        let t = AmqpTransport::open_uri("amqp://me:s3cret@h/%2f").unwrap();
        assert_eq!(t.describe(), "AMQP(amqp://me:***@h/%2f, prefix rex)");
        assert!(!format!("{t:?}").contains("s3cret"));
        let err = AmqpTransport::open_uri("amqps://me:s3cret@h/%2f?cacertfile=/none").unwrap_err();
        assert!(matches!(err, TransportError::InvalidUri { .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn uris_are_parsed_without_their_prefix_and_secrets() {
        let parsed = parse_uri(
            "amqp://u:s%40cret@broker.example:5673/my%2fvhost?prefix=app_one&heartbeat=5",
        )
        .unwrap();
        assert_eq!(parsed.prefix, "app_one");
        assert_eq!(
            parsed.display,
            "amqp://u:***@broker.example:5673/my%2fvhost?heartbeat=5"
        );
        assert_eq!(parsed.secrets, ["s%40cret", "s@cret"]);
        let uri = &parsed.uri;
        assert_eq!(
            (
                uri.authority.userinfo.username.as_str(),
                uri.authority.userinfo.password.as_str()
            ),
            ("u", "s@cret")
        );
        assert_eq!(
            (uri.authority.host.as_str(), uri.authority.port),
            ("broker.example", 5673)
        );
        assert_eq!(uri.vhost, "my/vhost");
        assert_eq!(uri.query.heartbeat, Some(5));
        assert_eq!(uri.query.connection_timeout, Some(CONNECT_TIMEOUT_MS));

        let parsed = parse_uri("amqp://10.1.2.3").unwrap();
        assert_eq!(parsed.uri.authority.host, "10.1.2.3", "IP hosts are kept");
        assert_eq!(parsed.uri.authority.port, 5672);
        assert_eq!(parsed.uri.vhost, "/");
        assert_eq!(parsed.uri.authority.userinfo.username, "guest");
        assert_eq!(parsed.uri.query.heartbeat, Some(HEARTBEAT_S));
        assert_eq!(parsed.uri.query.frame_max, Some(FRAME_MAX));
        assert_eq!(parsed.prefix, "rex");
        assert_eq!(parse_uri("amqp://h/").unwrap().uri.vhost, "/");
        assert_eq!(parse_uri("amqp://h/%2f").unwrap().uri.vhost, "/");
        assert_eq!(
            parse_uri("amqp://[::1]:5999/v").unwrap().uri.authority.host,
            "::1"
        );
        assert_eq!(
            parse_uri("amqp://h?connection_timeout=50")
                .unwrap()
                .connect_timeout,
            Duration::from_millis(50)
        );
        let parsed = parse_uri("amqps://h").unwrap();
        assert_eq!(parsed.tls, Some(OwnedTLSConfig::default()));
        assert_eq!(parsed.uri.authority.port, 5671);
        let reason = |uri: &str| match parse_uri(uri) {
            Err(TransportError::InvalidUri { reason, .. }) => reason,
            Err(other) => panic!("{uri}: {other}"),
            Ok(_) => panic!("{uri}: accepted"),
        };
        assert!(reason("amqp://h?cacertfile=/ca.pem").contains("use amqps://"));
        assert!(reason("amqps://h?verify=verify_none").contains("only verify_peer"));
        assert!(
            reason("amqps://h?cacertfile=/nonexistent.pem")
                .starts_with("cacertfile=/nonexistent.pem: ")
        );
        assert_eq!(
            reason("amqps://h?certfile=/c.pem"),
            "certfile and keyfile go together"
        );

        for bad in [
            "amqp://h?prefix=",
            "amqp://h?prefix=Bad",
            "amqp://h?prefix=a.b",
            "amqp://h?prefix=ab&prefix=cd",
            "amqp://h?heartbeat=x",
            "amqp://h?heartbeat=70000",
            "amqp://h?nope=1",
            "amqp://h:port",
            "amqp://h/a/b",
            "amqp://u:s3cret@h/%zz",
            "http://h",
        ] {
            match parse_uri(bad) {
                Err(TransportError::InvalidUri { uri, .. }) => {
                    assert!(!uri.contains("s3cret"), "{uri}")
                }
                Err(other) => panic!("{bad}: {other}"),
                Ok(_) => panic!("{bad} should be refused"),
            }
        }
    }
}
