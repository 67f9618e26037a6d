//! [`Error`], the crate's [`Result`] alias and the [`bail!`](crate::bail) macro.

use std::convert::Infallible;
use std::fmt;

/// `std::result::Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A worker or task failure: a human-readable message.
///
/// Returned from [`Worker::process`](crate::Worker::process) it becomes the `message` of the
/// `{"kind": "error"}` envelope; from a task, the host prints `FATAL ERROR: <message>`.
/// Build one with [`Error::new`], from a `String`/`&str`, through `?` on the common std and
/// `serde_json` errors, or with [`bail!`](crate::bail). Other errors convert with
/// `.map_err(Error::new)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error whose message is `message` rendered with `Display`.
    pub fn new(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message, by value.
    pub fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error {
            message: message.to_owned(),
        }
    }
}

impl From<Box<str>> for Error {
    fn from(message: Box<str>) -> Self {
        Error {
            message: message.into(),
        }
    }
}

impl From<Infallible> for Error {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

macro_rules! from_display {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(error: $ty) -> Self {
                Error::new(error)
            }
        }
    )*};
}

from_display!(
    serde_json::Error,
    std::io::Error,
    std::fmt::Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::str::ParseBoolError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
);

/// Return early with an [`Error`]: `bail!("bad input")`, `bail!("bad {field}")`,
/// `bail!("bad {}", field)` or `bail!(some_error)` (anything `Into<Error>`).
///
/// ```
/// fn check(n: i64) -> rex_plugin::Result<i64> {
///     if n < 0 {
///         rex_plugin::bail!("negative: {n}");
///     }
///     Ok(n)
/// }
/// assert_eq!(check(-1).unwrap_err().message(), "negative: -1");
/// ```
#[macro_export]
macro_rules! bail {
    ($msg:literal $(,)?) => {
        return ::core::result::Result::Err($crate::Error::new(::std::format!($msg)))
    };
    ($err:expr $(,)?) => {
        return ::core::result::Result::Err(::core::convert::From::from($err))
    };
    ($fmt:expr, $($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Error::new(::std::format!($fmt, $($arg)+)))
    };
}
