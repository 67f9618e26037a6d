//! TLS settings shared by the network transports: which roots to trust, how much of the
//! server's certificate to check, and the client's own certificate. One stack for all three
//! (native-tls over the system OpenSSL), so a certificate that works with `openssl s_client`
//! works here. Files are read when the transport is opened, so a missing or malformed file is
//! an error in the URI, not a connection that keeps failing.

use std::path::Path;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verify {
    /// The chain up to a trusted root and the host name (the default everywhere).
    Full,
    /// The chain, not the host name (PostgreSQL's `verify-ca`).
    Chain,
    /// Nothing: encrypted, but open to a man in the middle (`sslmode=require`, `prefer`).
    Nothing,
}

/// The TLS part of a transport URI, with its files already read.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub verify: Verify,
    /// PEM certificates trusted instead of the system's roots (libpq's, redis-rs's and
    /// Erlang's meaning of a CA file; the AMQP client adds them to the system's).
    pub roots: Option<String>,
    /// The client's certificate chain and PKCS#8 key, both PEM, for servers that ask for one.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for TlsSettings {
    // Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("verify", &self.verify)
            .field("roots", &self.roots.as_ref().map(|_| "PEM"))
            .field("identity", &self.identity.as_ref().map(|_| "PEM, key ***"))
            .finish()
    }
}

impl TlsSettings {
    pub fn new(verify: Verify) -> Self {
        TlsSettings {
            verify,
            roots: None,
            identity: None,
        }
    }

    /// The TLS settings of one URI: `verify`, plus the files its parameters name, each given
    /// as (parameter name, path if given). The reason is meant for
    /// [`crate::TransportError::InvalidUri`].
    pub fn from_files(
        verify: Verify,
        (roots_param, roots): (&str, Option<&str>),
        cert: (&str, Option<&str>),
        key: (&str, Option<&str>),
    ) -> Result<Self, String> {
        let mut settings = TlsSettings::new(verify);
        if let Some(path) = roots {
            settings.read_roots(roots_param, path)?;
        }
        settings.read_identity(cert, key)?;
        Ok(settings)
    }

    /// Read the trusted roots from `path`, named `param` in errors.
    pub fn read_roots(&mut self, param: &str, path: &str) -> Result<(), String> {
        let pem = read(param, path)?;
        let certificates = certificates(&pem)
            .map_err(|e| format!("{param}={path}: not a PEM certificate: {e}"))?;
        if certificates.is_empty() {
            return Err(format!("{param}={path}: no PEM certificate in the file"));
        }
        self.roots = Some(pem);
        Ok(())
    }

    /// Read the client certificate and its key (`cert_param`, `key_param` in errors); both or
    /// neither must be given.
    pub fn read_identity(
        &mut self,
        (cert_param, cert): (&str, Option<&str>),
        (key_param, key): (&str, Option<&str>),
    ) -> Result<(), String> {
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(()),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err(format!("{cert_param} and {key_param} go together")),
        };
        let cert_pem = read(cert_param, cert)?;
        let key_pem = read(key_param, key)?;
        native_tls::Identity::from_pkcs8(cert_pem.as_bytes(), key_pem.as_bytes()).map_err(|e| {
            format!(
                "{cert_param}={cert} with {key_param}={key}: not a PEM certificate and PKCS#8 \
                 key: {e}"
            )
        })?;
        self.identity = Some((cert_pem, key_pem));
        Ok(())
    }

    /// A connector for these settings.
    pub fn connector(&self) -> Result<native_tls::TlsConnector, String> {
        let mut builder = native_tls::TlsConnector::builder();
        match self.verify {
            Verify::Full => {}
            Verify::Chain => {
                builder.danger_accept_invalid_hostnames(true);
            }
            Verify::Nothing => {
                builder
                    .danger_accept_invalid_certs(true)
                    .danger_accept_invalid_hostnames(true);
            }
        }
        if let Some(roots) = &self.roots {
            builder.disable_built_in_roots(true);
            for certificate in certificates(roots).map_err(|e| e.to_string())? {
                builder.add_root_certificate(certificate);
            }
        }
        if let Some((cert, key)) = &self.identity {
            let identity = native_tls::Identity::from_pkcs8(cert.as_bytes(), key.as_bytes())
                .map_err(|e| e.to_string())?;
            builder.identity(identity);
        }
        builder.build().map_err(|e| e.to_string())
    }
}

fn read(param: &str, path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err(format!("{param} needs a file path"));
    }
    std::fs::read_to_string(Path::new(path)).map_err(|e| format!("{param}={path}: {e}"))
}

/// Every certificate of a PEM bundle (`Certificate::from_pem` reads only the first one).
fn certificates(pem: &str) -> Result<Vec<native_tls::Certificate>, native_tls::Error> {
    pem.split_inclusive(PEM_END)
        .filter_map(|block| block.find(PEM_BEGIN).map(|start| &block[start..]))
        .map(|block| native_tls::Certificate::from_pem(block.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn missing_and_malformed_files_are_reported_with_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = TlsSettings::new(Verify::Full);
        let missing = settings
            .read_roots("cacertfile", "/nonexistent/ca.pem")
            .unwrap_err();
        assert!(
            missing.starts_with("cacertfile=/nonexistent/ca.pem: "),
            "{missing}"
        );
        let empty = write(dir.path(), "empty.pem", "hello\n");
        let reason = settings.read_roots("sslrootcert", &empty).unwrap_err();
        assert!(reason.contains("no PEM certificate"), "{reason}");
        let bad = write(
            dir.path(),
            "bad.pem",
            &format!("{PEM_BEGIN}\nbm90IGEgY2VydA==\n{PEM_END}\n"),
        );
        let reason = settings.read_roots("sslrootcert", &bad).unwrap_err();
        assert!(reason.contains("not a PEM certificate"), "{reason}");
        assert!(settings.roots.is_none());
        assert!(
            settings
                .read_roots("x", "")
                .unwrap_err()
                .contains("needs a file path")
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let mut settings = TlsSettings::new(Verify::Full);
        let reason = settings
            .read_identity(("certfile", Some("/c.pem")), ("keyfile", None))
            .unwrap_err();
        assert_eq!(reason, "certfile and keyfile go together");
        settings
            .read_identity(("certfile", None), ("keyfile", None))
            .unwrap();
        assert!(settings.identity.is_none());
        assert!(settings.connector().is_ok());
    }
}
