//! Users and API tokens.

use crate::Result;
use jobhost_model::{TokenInfo, User};

/// A token record as the store keeps it.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// The public part.
    pub info: TokenInfo,
    /// SHA-256 of the token, hex.
    pub hash: String,
}

/// Users and their API tokens.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync {
    /// Returns the id of the user `name`, creating it (with `is_admin`) if missing.
    async fn ensure_user(&self, name: &str, is_admin: bool) -> Result<String>;

    /// Inserts a user; `false` when the name is taken.
    async fn insert_user(&self, user: &User) -> Result<bool>;

    /// Every user, by name.
    async fn list_users(&self) -> Result<Vec<User>>;

    /// The user with id `id`.
    async fn get_user(&self, id: &str) -> Result<Option<User>>;

    /// The user whose id or name is `key`.
    async fn find_user(&self, key: &str) -> Result<Option<User>>;

    /// Records a new token.
    async fn insert_token(&self, t: &StoredToken) -> Result<()>;

    /// The token with SHA-256 `hash` and its owner.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<(StoredToken, User)>>;

    /// The token `id`, whoever owns it.
    async fn get_token(&self, id: &str) -> Result<Option<TokenInfo>>;

    /// Records that a token was used at `at`.
    async fn touch_token(&self, id: &str, at: &str) -> Result<()>;

    /// Tokens of `owner` (everyone's when `None`), oldest first.
    async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenInfo>>;

    /// Revokes a live token (of `owner`, when given) and, in the same transaction,
    /// every token minted from it, directly or not (`parent_id`); returns the token,
    /// `None` if there is none.
    async fn revoke_token(&self, id: &str, owner: Option<&str>, at: &str) -> Result<Option<TokenInfo>>;
}
