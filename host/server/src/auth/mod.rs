//! Users and API tokens: who a request acts as, and what it may do.
//!
//! A token is `jh_` followed by 256 random bits (base64url, 43 characters). It is
//! shown once, when it is created; the store keeps only its SHA-256 (the look-up
//! key, so a comparison never runs over the secret itself) and its first characters
//! for listings. Each token carries scopes: `admin` (everything, every user's
//! records), `submit` (create and act on jobs and uploads), `read` (see them) and
//! `worker` (reserved for worker nodes). On first start the server mints an admin
//! token and writes it to `DATA_DIR/token` with mode 0600; it logs the path, never
//! the token.

use crate::jobs::{Caller, Error, Result};
use base64::Engine as _;
use jobhost_model::ids;
pub use jobhost_model::{NewToken, Scope, TokenInfo, User};
use jobhost_store::{Store, StoredToken};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What every token starts with, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "jh_";
/// Characters of a token kept for display: the prefix and 8 of the secret.
const DISPLAY_CHARS: usize = 11;
/// Name of the file in the data dir holding the first admin token.
pub const TOKEN_FILE: &str = "token";
/// The user created at first start.
pub const FIRST_ADMIN: &str = "admin";
/// `last_used_at` is written at most this often per token, so busy clients do not
/// turn every call into a write.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// Longest user name.
const MAX_NAME: usize = 64;
/// Longest lifetime a token may ask for (10 years).
const MAX_EXPIRES_IN_S: u64 = 10 * 365 * 24 * 3600;

/// Why a presented token was refused (all answer `unauthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token matches.
    Unknown,
    /// The token has expired.
    Expired,
    /// The token was revoked.
    Revoked,
    /// A WebSocket ticket that is unknown, used or out of time.
    Ticket,
}

impl Refusal {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unknown => "the token is not valid",
            Refusal::Expired => "the token has expired",
            Refusal::Revoked => "the token was revoked",
            Refusal::Ticket => "the ticket is not valid (tickets open one WebSocket, within 30 s of tokens.ticket)",
        }
    }
}

/// The users and tokens service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Auth {
    store: Arc<dyn Store>,
    /// When each token's `last_used_at` was last written.
    last_written: Arc<Mutex<HashMap<String, Instant>>>,
    /// When each token was last found good by [`Auth::recheck`], and the revocation
    /// count then.
    checked: Arc<Mutex<HashMap<String, (Instant, u64)>>>,
    /// Revocations made through this process, counted; watched by open subscriptions.
    revocations: Arc<tokio::sync::watch::Sender<u64>>,
    /// WebSocket tickets not yet used, by their SHA-256 ([`Auth::ticket`]).
    tickets: Arc<Mutex<HashMap<String, (Caller, Instant)>>>,
}

/// How long a WebSocket ticket stays usable.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);
/// What every WebSocket ticket starts with.
pub const TICKET_PREFIX: &str = "jht_";

/// How long a token found good stays good for [`Auth::recheck`] (unless a revocation is
/// made through this process meanwhile): the most a revocation through another node,
/// or an expiry, takes to reach a connection opened before it.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);

impl Auth {
    /// The service over `store`.
    pub fn new(store: Arc<dyn Store>) -> Auth {
        Auth {
            store,
            last_written: Arc::default(),
            checked: Arc::default(),
            revocations: Arc::new(tokio::sync::watch::Sender::new(0)),
            tickets: Arc::default(),
        }
    }

    /// Whether the token `caller` presented is still good, for a call on a connection
    /// authenticated earlier (a WebSocket stays open across calls). Found good, a token
    /// is looked up again after [`RECHECK_EVERY`], or at once after a revocation made
    /// through this process; a caller without a token (the server itself) always is.
    pub async fn recheck(&self, caller: &Caller) -> Result<std::result::Result<(), Refusal>> {
        let Some(id) = &caller.token_id else { return Ok(Ok(())) };
        let generation = *self.revocations.borrow();
        {
            let checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, seen)) = checked.get(id)
                && *seen == generation
                && at.elapsed() < RECHECK_EVERY
            {
                return Ok(Ok(()));
            }
        }
        let refusal = match self.store.get_token(id).await? {
            None => Some(Refusal::Unknown),
            Some(t) if t.revoked_at.is_some() => Some(Refusal::Revoked),
            Some(t) if t.expires_at.as_deref().is_some_and(|at| at <= ids::now().as_str()) => Some(Refusal::Expired),
            Some(_) => None,
        };
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        match refusal {
            Some(r) => {
                checked.remove(id);
                Ok(Err(r))
            }
            None => {
                if checked.len() > 100_000 {
                    checked.clear();
                }
                checked.insert(id.clone(), (Instant::now(), generation));
                Ok(Ok(()))
            }
        }
    }

    /// Changes with every revocation made through this process: what an open
    /// subscription watches to check its token again at once.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// A one-time ticket that opens one WebSocket as `caller`, within
    /// [`TICKET_LIFETIME`]: a browser cannot set the `Authorization` header on a
    /// WebSocket, and a token must not travel in a URL. A ticket is good once, here
    /// only (this process), and the calls on its socket are checked against the
    /// token as any other.
    pub fn ticket(&self, caller: &Caller) -> Result<String> {
        if caller.token_id.is_none() {
            return Err(Error::Forbidden("only a caller with a token gets a ticket".into()));
        }
        let secret: [u8; 32] = rand::random();
        let ticket = format!("{TICKET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        let mut tickets = self.tickets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        tickets.retain(|_, (_, made)| now.duration_since(*made) < TICKET_LIFETIME);
        tickets.insert(hash(&ticket), (caller.clone(), now));
        Ok(ticket)
    }

    /// The caller a ticket was made for, if it is unused and in time; used up either
    /// way. The token behind it is checked again, so a revoked one opens nothing.
    pub async fn redeem(&self, ticket: &str) -> Result<std::result::Result<Caller, Refusal>> {
        let taken = self.tickets.lock().unwrap_or_else(PoisonError::into_inner).remove(&hash(ticket));
        let Some((caller, _)) = taken.filter(|(_, made)| made.elapsed() < TICKET_LIFETIME) else {
            return Ok(Err(Refusal::Ticket));
        };
        Ok(self.recheck(&caller).await?.map(|()| caller))
    }

    /// Makes sure the first admin exists and `DATA_DIR/token` holds a live admin token
    /// of theirs; mints and writes one (mode 0600) when the file is missing or stale.
    /// Returns the admin's id.
    pub async fn bootstrap(&self, data_dir: &Path) -> anyhow::Result<String> {
        let admin = self.store.ensure_user(FIRST_ADMIN, true).await?;
        let path = data_dir.join(TOKEN_FILE);
        if let Ok(text) = std::fs::read_to_string(&path)
            && self.authenticate(text.trim()).await.is_ok_and(|r| r.is_ok())
        {
            return Ok(admin);
        }
        let (token, stored) = mint(&admin, vec![Scope::Admin], None);
        self.store.insert_token(&stored).await?;
        write_secret(&path, &token)?;
        tracing::info!(path = %path.display(), "wrote an admin API token");
        Ok(admin)
    }

    /// The caller a presented token stands for, or why it is refused.
    pub async fn authenticate(&self, token: &str) -> Result<std::result::Result<Caller, Refusal>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(Err(Refusal::Unknown));
        }
        let Some((stored, user)) = self.store.token_by_hash(&hash(token)).await? else {
            return Ok(Err(Refusal::Unknown));
        };
        if stored.info.revoked_at.is_some() {
            return Ok(Err(Refusal::Revoked));
        }
        if stored.info.expires_at.as_deref().is_some_and(|at| at <= ids::now().as_str()) {
            return Ok(Err(Refusal::Expired));
        }
        self.touch(&stored.info.id).await;
        let is_admin = user.is_admin && stored.info.scopes.contains(&Scope::Admin);
        Ok(Ok(Caller { user_id: user.id, is_admin, scopes: stored.info.scopes, token_id: Some(stored.info.id) }))
    }

    async fn touch(&self, token_id: &str) {
        {
            let mut last = self.last_written.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            match last.get(token_id) {
                Some(at) if now.duration_since(*at) < LAST_USED_EVERY => return,
                _ => {
                    last.insert(token_id.to_owned(), now);
                }
            }
        }
        if let Err(e) = self.store.touch_token(token_id, &ids::now()).await {
            tracing::warn!(error = %e, "recording a token's last use");
        }
    }

    /// `users.create` (admin only).
    pub async fn create_user(&self, caller: &Caller, name: &str, is_admin: bool) -> Result<User> {
        require_admin(caller)?;
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(Error::invalid("name", format!("must be 1 to {MAX_NAME} of [A-Za-z0-9._-]")));
        }
        let user = User { id: ids::new(ids::USER), name: name.to_owned(), is_admin, created_at: ids::now() };
        if !self.store.insert_user(&user).await? {
            return Err(Error::Conflict(format!("a user named {name:?} exists")));
        }
        Ok(user)
    }

    /// `users.list`: every user for an admin, oneself otherwise.
    pub async fn list_users(&self, caller: &Caller) -> Result<Vec<User>> {
        let users = self.store.list_users().await?;
        Ok(users.into_iter().filter(|u| caller.is_admin || u.id == caller.user_id).collect())
    }

    /// `tokens.create`. An admin may mint any scopes for any user; anyone else only for
    /// themself, only scopes the calling token holds, and a token that never outlives
    /// the calling one: it expires with it at the latest (by default at the same time)
    /// and is revoked with it (`parent_id`).
    pub async fn create_token(
        &self,
        caller: &Caller,
        user: Option<&str>,
        scopes: &[Scope],
        expires_in_s: Option<u64>,
    ) -> Result<NewToken> {
        let target = match user {
            None => self.store.get_user(&caller.user_id).await?,
            Some(u) => self.store.find_user(u).await?,
        };
        let target = match target {
            Some(t) if caller.is_admin || t.id == caller.user_id => t,
            _ => return Err(Error::NotFound(format!("user {:?} not found", user.unwrap_or_default()))),
        };
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "must name at least one scope"));
        }
        if !caller.is_admin
            && let Some(extra) = scopes.iter().find(|s| !caller.scopes.contains(s))
        {
            return Err(Error::Forbidden(format!(
                "a token can only grant scopes its creator holds; yours lacks {:?}",
                extra.as_str()
            )));
        }
        if scopes.contains(&Scope::Admin) && !target.is_admin {
            return Err(Error::Forbidden(format!("user {:?} is not an administrator", target.name)));
        }
        let expires_at = match expires_in_s {
            None => None,
            Some(s) if (1..=MAX_EXPIRES_IN_S).contains(&s) => {
                let at = chrono::Utc::now() + chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
                Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            }
            Some(_) => return Err(Error::invalid("expires_in_s", format!("must be between 1 and {MAX_EXPIRES_IN_S}"))),
        };
        // A non-admin's token mints within its own life.
        let (parent_id, expires_at) = match (&caller.token_id, caller.is_admin) {
            (Some(parent), false) => {
                let parent = self
                    .store
                    .list_tokens(Some(&caller.user_id))
                    .await?
                    .into_iter()
                    .find(|t| t.id == *parent)
                    .ok_or_else(|| Error::Unauthorized("the calling token is gone".into()))?;
                let expires_at = match (expires_at, parent.expires_at) {
                    (None, until) => until,
                    (Some(asked), Some(until)) if asked > until => {
                        return Err(Error::invalid(
                            "expires_in_s",
                            format!("a token cannot outlive the token that mints it, which expires at {until}"),
                        ));
                    }
                    (asked, _) => asked,
                };
                (Some(parent.id), expires_at)
            }
            _ => (None, expires_at),
        };
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let (token, mut stored) = mint(&target.id, scopes, expires_at);
        stored.info.parent_id = parent_id;
        self.store.insert_token(&stored).await?;
        Ok(NewToken {
            id: stored.info.id,
            token,
            prefix: stored.info.prefix,
            scopes: stored.info.scopes,
            expires_at: stored.info.expires_at,
        })
    }

    /// `tokens.list`: the caller's tokens (everyone's for an admin).
    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>> {
        let owner = (!caller.is_admin).then_some(caller.user_id.as_str());
        Ok(self.store.list_tokens(owner).await?)
    }

    /// `tokens.revoke`: a token of the caller's (any, for an admin).
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<TokenInfo> {
        let owner = (!caller.is_admin).then_some(caller.user_id.as_str());
        let not_found = || Error::NotFound(format!("token {id:?} not found"));
        if !ids::has_prefix(id, ids::TOKEN) {
            return Err(not_found());
        }
        match self.store.revoke_token(id, owner, &ids::now()).await? {
            Some(info) => {
                // Connections opened with it (or with tokens it minted) learn at their next
                // call; their subscriptions at once.
                self.revocations.send_modify(|n| *n += 1);
                Ok(info)
            }
            None => {
                let visible = self.store.list_tokens(owner).await?.into_iter().find(|t| t.id == id);
                match visible {
                    Some(t) => Err(Error::Conflict(format!("token {} is already revoked", t.id))),
                    None => Err(not_found()),
                }
            }
        }
    }
}

fn require_admin(caller: &Caller) -> Result<()> {
    if caller.is_admin { Ok(()) } else { Err(Error::Forbidden("only an administrator may do this".into())) }
}

/// A fresh token for `user_id` and the record to store for it.
fn mint(user_id: &str, scopes: Vec<Scope>, expires_at: Option<String>) -> (String, StoredToken) {
    let secret: [u8; 32] = rand::random();
    let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let info = TokenInfo {
        id: ids::new(ids::TOKEN),
        user_id: user_id.to_owned(),
        prefix: token.chars().take(DISPLAY_CHARS).collect(),
        scopes,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        created_at: ids::now(),
        parent_id: None,
    };
    let stored = StoredToken { hash: hash(&token), info };
    (token, stored)
}

/// Hex SHA-256 of a token: the look-up key.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Writes `secret` to a new file only its owner can read, replacing any old one.
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a token file, trimmed.
pub fn read_token_file(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_256_bit_and_stored_as_hashes() {
        let (token, stored) = mint("usr_x", vec![Scope::Read], None);
        assert!(token.starts_with("jh_"));
        assert_eq!(token.len(), 3 + 43);
        assert_eq!(stored.hash, hash(&token));
        assert_ne!(stored.hash, token);
        assert!(token.starts_with(&stored.info.prefix));
        let (other, _) = mint("usr_x", vec![Scope::Read], None);
        assert_ne!(token, other);
    }

    #[test]
    fn the_token_file_is_private() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(TOKEN_FILE);
        write_secret(&path, "jh_secret")?;
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(read_token_file(&path)?, "jh_secret");
        Ok(())
    }
}
