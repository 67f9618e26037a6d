//! User-facing errors in the rex.ctl style: a message followed by context paragraphs.
//!
//! ```text
//! FATAL ERROR: Expected one of:
//!     ctl_executor, demo_foo_worker
//! Got:
//!     "doesntexist"
//! While validating setting:
//!     asynctask_workers
//! ```
//!
//! Library layers (transports, plugin loading, I/O) have their own `thiserror` types; they are
//! converted into [`Error`] (with `?` or [`Error::from`]) at the point where the CLI adds
//! context, keeping the original as the [`source`](std::error::Error::source), and rendered
//! once, at the edge, by [`Error::render`].

use std::fmt;
use std::sync::Arc;

/// A rendered-on-demand error: a head line, an optional indented body, then paragraphs of
/// context (`While validating setting:` / `    asynctask_workers`), outermost last.
#[derive(Debug, Clone)]
pub struct Error {
    paragraphs: Vec<(String, Option<String>)>,
    /// The library error this one reports, when it comes from one.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.paragraphs == other.paragraphs
    }
}

impl Eq for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            paragraphs: vec![(message.into(), None)],
            source: None,
        }
    }

    /// A head line with an indented body, e.g. `Got unknown setting:` / `foo`.
    pub fn with_body(message: impl Into<String>, body: impl Into<String>) -> Self {
        Error {
            paragraphs: vec![(message.into(), Some(body.into()))],
            source: None,
        }
    }

    /// Report a library error: its message is the head line, and it stays the source.
    pub fn from_source(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error {
            paragraphs: vec![(e.to_string(), None)],
            source: Some(Arc::new(e)),
        }
    }

    /// Append a context paragraph (`header:` then the indented `body`).
    pub fn context(mut self, header: impl Into<String>, body: impl Into<String>) -> Self {
        self.paragraphs.push((header.into(), Some(body.into())));
        self
    }

    /// The text after `FATAL ERROR: `.
    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (head, body) in &self.paragraphs {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            f.write_str(head)?;
            if let Some(body) = body {
                for line in body.lines() {
                    f.write_str("\n")?;
                    if !line.is_empty() {
                        write!(f, "    {line}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<rex_transport::TransportError> for Error {
    fn from(e: rex_transport::TransportError) -> Self {
        Error::from_source(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::from_source(e)
    }
}

impl From<rex_console::ConsoleError> for Error {
    fn from(e: rex_console::ConsoleError) -> Self {
        Error::from_source(e)
    }
}

impl From<crate::plugin::PluginError> for Error {
    fn from(e: crate::plugin::PluginError) -> Self {
        Error::from_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_stay_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::from(io).context("While reading:", "rex.yaml");
        assert_eq!(e.render(), "no such file\nWhile reading:\n    rex.yaml");
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(
            source
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn paragraphs_are_indented() {
        let e = Error::with_body("Expected one of:", "a, b")
            .context("Got:", "\"c\"")
            .context("While validating setting:", "asynctask_workers");
        assert_eq!(
            e.render(),
            "Expected one of:\n    a, b\nGot:\n    \"c\"\nWhile validating setting:\n    asynctask_workers"
        );
    }
}
