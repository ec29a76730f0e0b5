//! The error a job function returns; its text becomes the job's recorded `error`.

use std::fmt;

/// Why a job failed. Its `Display` text is what jobhost records as the job's `error`.
///
/// `?` converts into it from `std::io::Error`, `serde_json::Error`, `String` and `&str`;
/// anything else that displays converts with [`Error::new`], and [`Context::context`]
/// prefixes what was being done (`"reading /input/a.txt: No such file or directory"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with `message` as its text.
    pub fn new(message: impl fmt::Display) -> Self {
        Error { message: message.to_string() }
    }

    /// The error's text, as recorded on the job.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

// Explicit conversions rather than a blanket `impl<E: std::error::Error> From<E>`: that
// blanket would forbid `From<String>` and `From<&str>` (coherence), which plugin code
// uses most (`return Err("bad input".into())`).

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(e)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<fmt::Error> for Error {
    fn from(e: fmt::Error) -> Self {
        Error::new(e)
    }
}

/// Adds what was being done to an error: `fs::read(p).context(format!("reading {p}"))?`.
pub trait Context<T> {
    /// Turns an error into an [`Error`] whose text is `"<context>: <error>"`.
    fn context(self, context: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| Error::new(format_args!("{context}: {}", e.into())))
    }
}
