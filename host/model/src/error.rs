//! Errors of the domain, one variant per error kind of the public API. The error type
//! owns its protocol codes: the JSON-RPC code ([`Error::rpc_code`]), the HTTP status of
//! the file routes ([`Error::http_status`]) and the error object both carry
//! ([`Error::to_object`]), so every transport maps an error the same way, in one place.

/// What went wrong, in the API's vocabulary (`data.kind` on the wire).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist or the caller may not see it.
    #[error("{0}")]
    NotFound(String),
    /// The JSON-RPC request itself is not one (e.g. its `id` is an object).
    #[error("{0}")]
    InvalidRequest(String),
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
    /// The client holds as many connections (or long polls) as it may: retry once one
    /// of them has closed. HTTP 429.
    #[error("{0}")]
    Busy(String),
    /// The request did not arrive within its deadline (a body sent too slowly). HTTP 408.
    #[error("{0}")]
    RequestTimeout(String),
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
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidParams { .. } => "invalid_params",
            Error::Conflict(_) => "conflict",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Unavailable(_) => "unavailable",
            Error::Busy(_) => "busy",
            Error::RequestTimeout(_) => "request_timeout",
            Error::Internal(_) => "internal",
        }
    }

    /// The JSON-RPC error code of this kind.
    pub fn rpc_code(&self) -> i32 {
        match self {
            Error::NotFound(_) => codes::NOT_FOUND,
            Error::InvalidRequest(_) => codes::INVALID_REQUEST,
            Error::InvalidParams { .. } => codes::INVALID_PARAMS,
            Error::Conflict(_) => codes::CONFLICT,
            Error::Unauthorized(_) => codes::UNAUTHORIZED,
            Error::Forbidden(_) => codes::FORBIDDEN,
            Error::LimitExceeded(_) => codes::LIMIT_EXCEEDED,
            Error::Unavailable(_) => codes::UNAVAILABLE,
            Error::Busy(_) => codes::BUSY,
            Error::RequestTimeout(_) => codes::REQUEST_TIMEOUT,
            Error::Internal(_) => codes::INTERNAL,
        }
    }

    /// The HTTP status of this kind on the file routes (uploads, artifact downloads).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::InvalidRequest(_) => 400,
            Error::InvalidParams { .. } => 400,
            Error::Conflict(_) => 409,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::LimitExceeded(_) => 413,
            Error::Unavailable(_) => 503,
            Error::Busy(_) => 429,
            Error::RequestTimeout(_) => 408,
            Error::Internal(_) => 500,
        }
    }

    /// `data` of the error object: the kind, and the parameter to blame when known.
    pub fn data(&self) -> serde_json::Value {
        match self {
            Error::InvalidParams { field: Some(field), .. } => {
                serde_json::json!({ "kind": self.kind(), "field": field })
            }
            _ => serde_json::json!({ "kind": self.kind() }),
        }
    }

    /// The error as the JSON of a JSON-RPC error object (`code`, `message`, `data`).
    pub fn to_object(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.rpc_code(), "message": self.to_string(), "data": self.data() })
    }
}

/// JSON-RPC error codes by kind (`data.kind`). Standard codes where JSON-RPC has one.
pub mod codes {
    /// `invalid_request`.
    pub const INVALID_REQUEST: i32 = -32600;
    /// `invalid_params`.
    pub const INVALID_PARAMS: i32 = -32602;
    /// `internal`.
    pub const INTERNAL: i32 = -32603;
    /// `not_found`.
    pub const NOT_FOUND: i32 = -32001;
    /// `conflict`.
    pub const CONFLICT: i32 = -32002;
    /// `unauthorized`.
    pub const UNAUTHORIZED: i32 = -32003;
    /// `forbidden`.
    pub const FORBIDDEN: i32 = -32004;
    /// `limit_exceeded`.
    pub const LIMIT_EXCEEDED: i32 = -32005;
    /// `unavailable`.
    pub const UNAVAILABLE: i32 = -32006;
    /// `busy`.
    pub const BUSY: i32 = -32007;
    /// `request_timeout`.
    pub const REQUEST_TIMEOUT: i32 = -32008;
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
