//! Who is asking and what they may do: users, tokens and their scopes as the API
//! shows them. Secrets never appear here: a token's secret is shown once, in
//! [`NewToken`], and the store keeps only its hash.

use serde::{Deserialize, Serialize};

/// A permission a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Manage users and tokens, install plugins, see and act on every user's records.
    Admin,
    /// Submit, cancel and clean up jobs; create uploads.
    Submit,
    /// Read jobs, logs, artifacts and uploads.
    Read,
    /// Reserved for worker nodes that claim jobs.
    Worker,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::Submit, Scope::Read, Scope::Worker];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Worker => "worker",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }
}

/// A user record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    /// `usr_…`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Whether the user is an administrator.
    pub is_admin: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A token as listings show it: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenInfo {
    /// `tok_…`.
    pub id: String,
    /// The owner's id.
    pub user_id: String,
    /// The first characters of the token.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it stops working, if ever.
    pub expires_at: Option<String>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The token that minted it, for one a non-admin minted: it never outlives that
    /// token and is revoked with it. None for one an administrator or the server minted.
    #[serde(default)]
    pub parent_id: Option<String>,
}

/// `tokens.create` result: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewToken {
    /// `tok_…`.
    pub id: String,
    /// The token itself.
    pub token: String,
    /// The first characters of the token.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it stops working, if ever.
    pub expires_at: Option<String>,
}

/// Who is asking. Every query is answered from the caller's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user_id: String,
    /// Admins see and act on every user's jobs.
    pub is_admin: bool,
    /// What the presented token may do.
    pub scopes: Vec<Scope>,
    /// The token presented (`None` for the server acting on its own).
    pub token_id: Option<String>,
}

impl Caller {
    /// Whether the caller may act with `scope` (`admin` may do everything).
    pub fn has(&self, scope: Scope) -> bool {
        self.is_admin || self.scopes.contains(&scope)
    }
}
