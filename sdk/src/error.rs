//! The error a job function returns; its text becomes the job's recorded `error`, and
//! its chain of causes (what was being done, down to the root cause) the job's `detail`.

use std::fmt;

/// Why a job failed. Its `Display` text is what jobhost records as the job's `error`.
///
/// `?` converts into it from `std::io::Error`, `serde_json::Error`, `String` and `&str`;
/// anything else that displays converts with [`Error::new`], and [`Context::context`]
/// prefixes what was being done (`"reading /input/a.txt: No such file or directory"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What went wrong, outermost context first, root cause last.
    chain: Vec<String>,
    /// `chain` joined with `": "`: the one-line text.
    message: String,
}

impl Error {
    /// An error with `message` as its text.
    pub fn new(message: impl fmt::Display) -> Self {
        let message = message.to_string();
        Error { chain: vec![message.clone()], message }
    }

    /// The error's text, as recorded on the job: every link of the chain on one line.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The chain of causes, outermost first.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// This error inside `context` (what was being done when it happened).
    pub fn context(self, context: impl fmt::Display) -> Self {
        let context = context.to_string();
        let message = format!("{context}: {}", self.message);
        let mut chain = vec![context];
        chain.extend(self.chain);
        Error { chain, message }
    }

    /// The text handed to the host as `run`'s error: the one-line message, then, when
    /// there is more than one link, each link on a line of its own. The host records
    /// the first line as the job's `error` and the rest as its `detail`.
    pub fn to_job_error(&self) -> String {
        if self.chain.len() < 2 {
            return self.message.clone();
        }
        let mut text = self.message.clone();
        for link in &self.chain {
            text.push('\n');
            text.push_str(link);
        }
        text
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
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<crate::executor::ExecutorError> for Error {
    fn from(e: crate::executor::ExecutorError) -> Self {
        Error::new(e)
    }
}

impl From<fmt::Error> for Error {
    fn from(e: fmt::Error) -> Self {
        Error::new(e)
    }
}

/// Adds what was being done to an error: `fs::read(p).context(format!("reading {p}"))?`.
pub trait Context<T> {
    /// Turns an error into an [`Error`] whose text is `"<context>: <error>"` and whose
    /// chain of causes starts with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| e.into().context(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_one_line_and_the_chain() {
        let e: Result<(), Error> = Err(Error::new("connection refused"));
        let e = e.context("fetching a.bin").context("pulling org/model").err().unwrap_or_else(|| Error::new(""));
        assert_eq!(e.message(), "pulling org/model: fetching a.bin: connection refused");
        assert_eq!(e.chain(), ["pulling org/model", "fetching a.bin", "connection refused"]);
        assert_eq!(
            e.to_job_error(),
            "pulling org/model: fetching a.bin: connection refused\npulling org/model\nfetching a.bin\nconnection refused"
        );
        assert_eq!(Error::new("plain").to_job_error(), "plain", "a single cause adds no detail");
    }
}
