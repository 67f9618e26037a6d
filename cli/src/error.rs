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
//! Library layers (transports, plugin loading) have their own `thiserror` types; they are
//! converted into [`Error`] at the point where the CLI adds context, and rendered once, at the
//! edge, by [`Error::render`].

use std::fmt;

/// A rendered-on-demand error: a head line, an optional indented body, then paragraphs of
/// context (`While validating setting:` / `    asynctask_workers`), outermost last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    paragraphs: Vec<(String, Option<String>)>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            paragraphs: vec![(message.into(), None)],
        }
    }

    /// A head line with an indented body, e.g. `Got unknown setting:` / `foo`.
    pub fn with_body(message: impl Into<String>, body: impl Into<String>) -> Self {
        Error {
            paragraphs: vec![(message.into(), Some(body.into()))],
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

impl std::error::Error for Error {}

impl From<rex_transport::TransportError> for Error {
    fn from(e: rex_transport::TransportError) -> Self {
        Error::new(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
