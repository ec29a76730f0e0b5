//! Errors of the domain, one variant per error kind of the public API.

use crate::store::StoreError;

/// What went wrong, in the API's vocabulary (`data.kind` on the wire).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist or the caller may not see it.
    #[error("{0}")]
    NotFound(String),
    /// A parameter is missing, malformed or out of range.
    #[error("{message}")]
    InvalidParams {
        /// What is wrong.
        message: String,
        /// The parameter, as a path (`timeout_s`, `env.PATH`), when one is to blame.
        field: Option<String>,
    },
    /// The request conflicts with the current state (e.g. cancelling a finished job).
    #[error("{0}")]
    Conflict(String),
    /// The request carries no valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// The request is authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A limit or the machine's capacity would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// The server cannot serve it now (shutting down, overloaded).
    #[error("{0}")]
    Unavailable(String),
    /// A fault on our side; the detail goes to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An invalid parameter `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::InvalidParams { message: format!("{field}: {}", message.into()), field: Some(field.to_owned()) }
    }

    /// The stable kind string of the wire format.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::InvalidParams { .. } => "invalid_params",
            Error::Conflict(_) => "conflict",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        tracing::error!(error = %e, "store");
        Error::Internal("an internal database error occurred".into())
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
