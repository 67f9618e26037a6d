//! URIs: parsing `postgresql://...` and `pgsql:DBNAME` (with libpq's environment variables for
//! what is left out) into the client's configuration, the TLS settings and the schema, and
//! showing them without their password.

use std::time::Duration;

use tokio_postgres::config::SslMode;

use crate::tls::{TlsSettings, Verify};
use crate::uri::{percent_decode, percent_encode};
use crate::{Result, TransportError};

const DEFAULT_SCHEMA: &str = "asynctask";
/// Schema names longer than this would make the notification channel names too long.
pub(super) const MAX_SCHEMA_LEN: usize = 48;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalives on every connection: the first probe after this much silence…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// … then one every this long, and the connection is dropped after this many unanswered:
/// a dead server or a lost route is noticed on an idle connection within about 11 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;
/// Data sent and not acknowledged by the server for this long drops the connection
/// (`TCP_USER_TIMEOUT`), on a busy connection, where keepalives do not apply.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed URI.
pub(super) struct Target {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: TlsSettings,
    pub(super) schema: String,
    /// Canonical form without the password.
    pub(super) described: String,
}

pub(super) fn parse_uri(uri: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
    let invalid = |reason: String| TransportError::InvalidUri {
        uri: crate::redact_uri(uri),
        reason,
    };
    const FORMS: &str =
        "expected postgresql://[USER[:PASSWORD]@][HOST][:PORT][/DBNAME][?PARAMS] or pgsql:DBNAME";
    let (_, rest) = uri
        .split_once(':')
        .filter(|(scheme, _)| matches!(*scheme, "pgsql" | "postgres" | "postgresql"))
        .ok_or_else(|| invalid(FORMS.into()))?;
    let (body, query) = rest.split_once('?').unwrap_or((rest, ""));
    let unescape =
        |s: &str| percent_decode(s).ok_or_else(|| invalid(format!("bad escape in {s:?}")));
    let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());

    let (user, password, host, port, dbname) = if let Some(hier) = body.strip_prefix("//") {
        let (authority, path) = hier.split_once('/').unwrap_or((hier, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((name, secret)) => {
                let has_secret = userinfo.is_some_and(|u| u.contains(':'));
                (
                    nonempty(unescape(name)?),
                    if has_secret {
                        Some(unescape(secret)?)
                    } else {
                        None
                    },
                )
            }
            None => (None, None),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed [ in the host".into()))?;
            match after {
                "" => (address, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (address, Some(port)),
                    None => return Err(invalid(format!("unexpected {after:?} after the host"))),
                },
            }
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        let port = match port.filter(|p| !p.is_empty()) {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid(format!("bad port {p:?}")))?,
            ),
            None => None,
        };
        (
            user,
            password,
            nonempty(unescape(host)?),
            port,
            nonempty(unescape(path)?),
        )
    } else {
        if body.is_empty() || body.starts_with('/') {
            return Err(invalid(FORMS.into()));
        }
        (None, None, None, None, Some(unescape(body)?))
    };

    let mut config = tokio_postgres::Config::new();
    let mut schema = DEFAULT_SCHEMA.to_string();
    config
        .application_name("rex")
        .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    let (mut sslmode, mut sslrootcert, mut sslcert, mut sslkey) = (None, None, None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("expected NAME=VALUE, got {pair:?}")))?;
        let value = unescape(value)?;
        match key {
            "schema" => {
                let ok = value.len() <= MAX_SCHEMA_LEN
                    && value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && value
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !value.starts_with("pg_");
                if !ok {
                    return Err(invalid(format!(
                        "schema {value:?}: expected lowercase letters, digits and underscores, \
                         not starting with a digit or pg_, at most {MAX_SCHEMA_LEN} characters"
                    )));
                }
                schema = value;
            }
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(value),
            "sslcert" => sslcert = Some(value),
            "sslkey" => sslkey = Some(value),
            "application_name" => {
                config.application_name(value);
            }
            "connect_timeout" => {
                let seconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| invalid(format!("bad connect_timeout {value:?}")))?;
                config.connect_timeout(Duration::from_secs(seconds));
            }
            _ => {
                return Err(invalid(format!(
                    "unknown parameter {key:?} (known: schema, sslmode, sslrootcert, sslcert, \
                     sslkey, application_name, connect_timeout)"
                )));
            }
        }
    }

    let explicit_mode = sslmode.clone();
    let sslmode = sslmode.or_else(|| env("PGSSLMODE").and_then(nonempty));
    let sslrootcert = sslrootcert.or_else(|| env("PGSSLROOTCERT").and_then(nonempty));
    // libpq's meaning of each mode; `require` with a root certificate checks the chain.
    let (mode, verify) = match sslmode.as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Verify::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if sslrootcert.is_some() => (SslMode::Require, Verify::Chain),
        "require" => (SslMode::Require, Verify::Nothing),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => {
            return Err(invalid(format!(
                "unknown sslmode {other:?} (known: disable, allow, prefer, require, verify-ca, \
                 verify-full)"
            )));
        }
    };
    config.ssl_mode(mode);
    let tls = TlsSettings::from_files(
        verify,
        ("sslrootcert", sslrootcert.as_deref()),
        ("sslcert", sslcert.as_deref()),
        ("sslkey", sslkey.as_deref()),
    )
    .map_err(&invalid)?;

    let host = host
        .or_else(|| env("PGHOST").and_then(nonempty))
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = match port {
        Some(port) => port,
        None => match env("PGPORT").filter(|p| !p.is_empty()) {
            Some(p) => p
                .parse()
                .map_err(|_| invalid(format!("bad PGPORT {p:?}")))?,
            None => 5432,
        },
    };
    let user = user
        .or_else(|| env("PGUSER").and_then(nonempty))
        .unwrap_or_else(|| "postgres".into());
    let password = password.or_else(|| env("PGPASSWORD").and_then(nonempty));
    let dbname = dbname
        .or_else(|| env("PGDATABASE").and_then(nonempty))
        .unwrap_or_else(|| user.clone());
    config.host(&host).port(port).user(&user).dbname(&dbname);
    if let Some(password) = &password {
        config.password(password);
    }

    let shown_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        percent_encode(&host)
    };
    let mut described = format!(
        "postgresql://{}{}@{shown_host}:{port}/{}",
        percent_encode(&user),
        if password.is_some() { ":***" } else { "" },
        percent_encode(&dbname)
    );
    if let Some(mode) = explicit_mode {
        described = format!("{described}?sslmode={mode}");
    }
    Ok(Target {
        config,
        tls,
        schema,
        described,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use crate::pgsql::PgsqlTransport;

    fn parse(uri: &str, env: &[(&str, &str)]) -> Result<Target> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_uri(uri, &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn reason(uri: &str) -> String {
        match parse(uri, &[]) {
            Err(TransportError::InvalidUri { reason, .. }) => reason,
            Err(other) => panic!("{uri}: expected InvalidUri, got {other}"),
            Ok(_) => panic!("{uri}: expected an error"),
        }
    }

    #[test]
    fn full_uris() {
        let t = parse(
            "postgresql://rex:s%40cret@db.example:6543/jobs?schema=work&sslmode=disable&application_name=w1",
            &[("PGHOST", "elsewhere"), ("PGUSER", "nobody")],
        )
        .unwrap();
        assert_eq!(t.schema, "work");
        assert_eq!(
            t.described,
            "postgresql://rex:***@db.example:6543/jobs?sslmode=disable"
        );
        let c = &t.config;
        assert_eq!(c.get_user(), Some("rex"));
        assert_eq!(c.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(c.get_dbname(), Some("jobs"));
        assert_eq!(c.get_ports(), [6543]);
        assert_eq!(
            c.get_hosts(),
            [tokio_postgres::config::Host::Tcp("db.example".into())]
        );
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.get_application_name(), Some("w1"));

        for scheme in ["postgres", "pgsql"] {
            let t = parse(&format!("{scheme}://postgres@127.0.0.1/test"), &[]).unwrap();
            assert_eq!(t.schema, DEFAULT_SCHEMA);
            assert_eq!(t.described, "postgresql://postgres@127.0.0.1:5432/test");
            assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
        }
        let t = parse("postgresql://[::1]:5433", &[]).unwrap();
        assert_eq!(t.described, "postgresql://postgres@[::1]:5433/postgres");
    }

    #[test]
    fn short_form_uses_the_environment() {
        let t = parse("pgsql:jobs", &[]).unwrap();
        assert_eq!(t.described, "postgresql://postgres@127.0.0.1:5432/jobs");
        let t = parse(
            "pgsql:jobs?schema=q",
            &[
                ("PGHOST", "pg.local"),
                ("PGUSER", "rex"),
                ("PGPORT", "5000"),
            ],
        )
        .unwrap();
        assert_eq!(t.described, "postgresql://rex@pg.local:5000/jobs");
        assert_eq!(t.schema, "q");
        let t = parse("pgsql:jobs", &[("PGPASSWORD", "hunter2")]).unwrap();
        assert_eq!(t.described, "postgresql://postgres:***@127.0.0.1:5432/jobs");
    }

    #[test]
    fn sslmodes_mean_what_they_mean_to_libpq() {
        let cases = [
            ("", SslMode::Prefer, Verify::Nothing),
            ("?sslmode=disable", SslMode::Disable, Verify::Nothing),
            ("?sslmode=allow", SslMode::Prefer, Verify::Nothing),
            ("?sslmode=require", SslMode::Require, Verify::Nothing),
            ("?sslmode=verify-ca", SslMode::Require, Verify::Chain),
            ("?sslmode=verify-full", SslMode::Require, Verify::Full),
        ];
        for (query, mode, verify) in cases {
            let t = parse(&format!("pgsql://h/db{query}"), &[]).unwrap();
            assert_eq!(t.config.get_ssl_mode(), mode, "{query}");
            assert_eq!(t.tls.verify, verify, "{query}");
            assert!(t.described.ends_with(query), "{}", t.described);
        }
        let t = parse("pgsql://h/db", &[("PGSSLMODE", "verify-full")]).unwrap();
        assert_eq!(t.tls.verify, Verify::Full);
        assert_eq!(t.described, "postgresql://postgres@h:5432/db");

        // A root certificate makes `require` check the chain, as with libpq.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfakefakefakefakefakefakefakefakewCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        let bad = reason(&format!(
            "pgsql://h/db?sslmode=require&sslrootcert={}",
            ca.display()
        ));
        assert!(bad.contains("not a PEM certificate"), "{bad}");
        let missing = reason("pgsql://h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem");
        assert!(
            missing.starts_with("sslrootcert=/nonexistent.pem: "),
            "{missing}"
        );
        let lone = reason("pgsql://h/db?sslcert=/c.pem");
        assert_eq!(lone, "sslcert and sslkey go together");
    }

    #[test]
    fn bad_uris() {
        assert!(reason("pgsql:").contains("expected"));
        assert!(reason("pgsql://h:99999/db").contains("bad port"));
        assert!(reason("pgsql://h/db?sslmode=bogus").contains("unknown sslmode"));
        assert!(reason("pgsql://h/db?nope=1").contains("unknown parameter"));
        for schema in ["Work", "1a", "a-b", "pg_x", "", &"a".repeat(49)] {
            assert!(
                reason(&format!("pgsql://h/db?schema={schema}")).contains("schema"),
                "{schema}"
            );
        }
        assert!(reason("pgsql://h/db%zz").contains("escape"));
    }

    #[test]
    fn passwords_never_show() {
        let err = parse("postgresql://rex:p/ss@w0rd@h:x/db", &[])
            .err()
            .unwrap();
        assert!(!err.to_string().contains("ss@w0rd"), "{err}");
        assert!(!err.to_string().contains("p/ss"), "{err}");
        let t = PgsqlTransport::open("postgresql://rex:secret@127.0.0.1:1/db").unwrap();
        assert_eq!(
            t.describe(),
            "PostgreSQL(postgresql://rex:***@127.0.0.1:1/db, schema asynctask)"
        );
    }

    #[test]
    fn open_routes_the_schemes() {
        for uri in ["pgsql:db", "postgres://h/db", "postgresql://h/db"] {
            let t = crate::open(uri).unwrap();
            assert!(
                t.describe().starts_with("PostgreSQL(postgresql://"),
                "{uri}"
            );
            assert!(t.is_shared());
        }
    }
}
