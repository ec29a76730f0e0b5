//! Users, API tokens and uploads.

use super::{Result, Store, StoreError, to_i64, to_u64};
use crate::auth::{Scope, StoredToken, TokenInfo, User};
use crate::uploads::{Upload, UploadState};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

/// Every column of a token row (alias `t`).
macro_rules! token_columns {
    () => {
        "t.id, t.user_id, t.hash, t.prefix, t.scopes, t.expires_at, t.last_used_at, t.revoked_at, t.created_at"
    };
}

/// Every column of an upload row.
macro_rules! upload_columns {
    () => {
        "id, user_id, state, size_bytes, file_count, job_id, expires_at, created_at"
    };
}

impl Store {
    /// Inserts a user; `false` when the name is taken.
    pub async fn insert_user(&self, user: &User) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO users (id, name, is_admin, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(user.is_admin)
        .bind(&user.created_at)
        .execute(&mut *self.write_turn().await?)
        .await?
        .rows_affected()
            == 1)
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        sqlx::query("SELECT id, name, is_admin, created_at FROM users ORDER BY name")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// The user with id `id`.
    pub async fn get_user(&self, id: &str) -> Result<Option<User>> {
        sqlx::query("SELECT id, name, is_admin, created_at FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    /// The user whose id or name is `key`.
    pub async fn find_user(&self, key: &str) -> Result<Option<User>> {
        sqlx::query("SELECT id, name, is_admin, created_at FROM users WHERE id = ?1 OR name = ?1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    /// Records a new token.
    pub async fn insert_token(&self, t: &StoredToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_id, hash, prefix, scopes, expires_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.info.id)
        .bind(&t.info.user_id)
        .bind(&t.hash)
        .bind(&t.info.prefix)
        .bind(scopes_text(&t.info.scopes))
        .bind(&t.info.expires_at)
        .bind(&t.info.created_at)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }

    /// The token with SHA-256 `hash` and its owner.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<(StoredToken, User)>> {
        let sql = concat!(
            "SELECT ",
            token_columns!(),
            ", u.name AS user_name, u.is_admin AS user_is_admin, u.created_at AS user_created_at \
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?"
        );
        let Some(row) = sqlx::query(sql).bind(hash).fetch_optional(&self.read).await? else {
            return Ok(None);
        };
        let token = token_from_row(&row)?;
        let user = User {
            id: token.info.user_id.clone(),
            name: row.try_get("user_name")?,
            is_admin: row.try_get("user_is_admin")?,
            created_at: row.try_get("user_created_at")?,
        };
        Ok(Some((token, user)))
    }

    /// Records that a token was used at `at`.
    pub async fn touch_token(&self, id: &str, at: &str) -> Result<()> {
        sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&mut *self.write_turn().await?)
            .await?;
        Ok(())
    }

    /// Tokens of `owner` (everyone's when `None`), oldest first.
    pub async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenInfo>> {
        let sql =
            concat!("SELECT ", token_columns!(), " FROM tokens t WHERE (?1 IS NULL OR t.user_id = ?1) ORDER BY t.id");
        sqlx::query(sql)
            .bind(owner)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| token_from_row(r).map(|t| t.info))
            .collect()
    }

    /// Revokes a live token (of `owner`, when given); `None` if there is none.
    pub async fn revoke_token(&self, id: &str, owner: Option<&str>, at: &str) -> Result<Option<TokenInfo>> {
        let sql = "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND (?3 IS NULL OR user_id = ?3) \
                   AND revoked_at IS NULL RETURNING id, user_id, hash, prefix, scopes, expires_at, last_used_at, \
                   revoked_at, created_at";
        sqlx::query(sql)
            .bind(at)
            .bind(id)
            .bind(owner)
            .fetch_optional(&mut *self.write_turn().await?)
            .await?
            .map(|r| token_from_row(&r).map(|t| t.info))
            .transpose()
    }

    /// Records a new upload.
    pub async fn insert_upload(&self, u: &Upload) -> Result<()> {
        sqlx::query(
            "INSERT INTO uploads (id, user_id, state, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&u.id)
        .bind(&u.user_id)
        .bind(u.state.as_str())
        .bind(&u.expires_at)
        .bind(&u.created_at)
        .bind(&u.created_at)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }

    /// The upload `id`.
    pub async fn get_upload(&self, id: &str) -> Result<Option<Upload>> {
        let sql = concat!("SELECT ", upload_columns!(), " FROM uploads WHERE id = ?");
        sqlx::query(sql).bind(id).fetch_optional(&self.read).await?.map(|r| upload_from_row(&r)).transpose()
    }

    /// How many open or finalized uploads `user_id` has, and their bytes.
    pub async fn live_uploads_of(&self, user_id: &str) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size_bytes), 0) AS bytes FROM uploads \
             WHERE user_id = ? AND state IN ('open', 'finalized')",
        )
        .bind(user_id)
        .fetch_one(&self.read)
        .await?;
        Ok((to_u64(row.try_get("n")?), to_u64(row.try_get("bytes")?)))
    }

    /// Records the measured size of an open upload.
    pub async fn set_upload_size(&self, id: &str, bytes: u64, files: u64) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET size_bytes = ?, file_count = ?, updated_at = ? WHERE id = ? AND state = 'open'",
        )
        .bind(to_i64(bytes))
        .bind(to_i64(files))
        .bind(crate::ids::now())
        .bind(id)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }

    /// `open` → `finalized` with its final size; `None` if it was not open.
    pub async fn finalize_upload(&self, id: &str, bytes: u64, files: u64) -> Result<Option<Upload>> {
        let sql = concat!(
            "UPDATE uploads SET state = 'finalized', size_bytes = ?, file_count = ?, updated_at = ? \
             WHERE id = ? AND state = 'open' RETURNING ",
            upload_columns!()
        );
        sqlx::query(sql)
            .bind(to_i64(bytes))
            .bind(to_i64(files))
            .bind(crate::ids::now())
            .bind(id)
            .fetch_optional(&mut *self.write_turn().await?)
            .await?
            .map(|r| upload_from_row(&r))
            .transpose()
    }

    /// Marks every open or finalized upload whose time is past `now` expired; returns
    /// their ids (their files are to be deleted).
    pub async fn expire_uploads(&self, now: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE uploads SET state = 'expired', updated_at = ?1 \
             WHERE state IN ('open', 'finalized') AND expires_at <= ?1 RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *self.write_turn().await?)
        .await?)
    }
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

fn user_from_row(row: &SqliteRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        is_admin: row.try_get("is_admin")?,
        created_at: row.try_get("created_at")?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<StoredToken> {
    let scopes: String = row.try_get("scopes")?;
    let scopes = scopes
        .split_whitespace()
        .map(|s| Scope::parse(s).ok_or_else(|| StoreError::Corrupt(format!("token scope {s:?}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(StoredToken {
        hash: row.try_get("hash")?,
        info: TokenInfo {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            prefix: row.try_get("prefix")?,
            scopes,
            expires_at: row.try_get("expires_at")?,
            last_used_at: row.try_get("last_used_at")?,
            revoked_at: row.try_get("revoked_at")?,
            created_at: row.try_get("created_at")?,
        },
    })
}

fn upload_from_row(row: &SqliteRow) -> Result<Upload> {
    let state: String = row.try_get("state")?;
    Ok(Upload {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        state: UploadState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("upload state {state:?}")))?,
        size_bytes: to_u64(row.try_get("size_bytes")?),
        file_count: to_u64(row.try_get("file_count")?),
        job_id: row.try_get("job_id")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
    })
}
