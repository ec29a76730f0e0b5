//! Users and API tokens on SQLite.

use super::SqliteStore;
use crate::{AccessStore, Result, StoreError, StoredToken};
use jobhost_model::{Scope, TokenInfo, User, ids};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

/// Every column of a token row (alias `t`).
macro_rules! token_columns {
    () => {
        "t.id, t.user_id, t.hash, t.prefix, t.scopes, t.expires_at, t.last_used_at, t.revoked_at, t.created_at, \
         t.parent_id"
    };
}

#[async_trait::async_trait]
impl AccessStore for SqliteStore {
    async fn ensure_user(&self, name: &str, is_admin: bool) -> Result<String> {
        sqlx::query(
            "INSERT INTO users (id, name, is_admin, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(ids::new(ids::USER))
        .bind(name)
        .bind(is_admin)
        .bind(ids::now())
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM users WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *self.write_turn().await?)
            .await?)
    }

    async fn insert_user(&self, user: &User) -> Result<bool> {
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

    async fn list_users(&self) -> Result<Vec<User>> {
        sqlx::query("SELECT id, name, is_admin, created_at FROM users ORDER BY name")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        sqlx::query("SELECT id, name, is_admin, created_at FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn find_user(&self, key: &str) -> Result<Option<User>> {
        sqlx::query("SELECT id, name, is_admin, created_at FROM users WHERE id = ?1 OR name = ?1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn insert_token(&self, t: &StoredToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_id, hash, prefix, scopes, expires_at, created_at, parent_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.info.id)
        .bind(&t.info.user_id)
        .bind(&t.hash)
        .bind(&t.info.prefix)
        .bind(scopes_text(&t.info.scopes))
        .bind(&t.info.expires_at)
        .bind(&t.info.created_at)
        .bind(&t.info.parent_id)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<(StoredToken, User)>> {
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

    async fn get_token(&self, id: &str) -> Result<Option<TokenInfo>> {
        sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens t WHERE t.id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .map(|r| token_from_row(&r).map(|t| t.info))
            .transpose()
    }

    async fn touch_token(&self, id: &str, at: &str) -> Result<()> {
        sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&mut *self.write_turn().await?)
            .await?;
        Ok(())
    }

    async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenInfo>> {
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

    async fn revoke_token(&self, id: &str, owner: Option<&str>, at: &str) -> Result<Option<TokenInfo>> {
        let mut turn = self.write_turn().await?;
        let mut tx = sqlx::Connection::begin(&mut *turn).await?;
        let revoked = sqlx::query(
            "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND (?3 IS NULL OR user_id = ?3) \
             AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !revoked {
            return Ok(None);
        }
        sqlx::query(REVOKE_DESCENDANTS).bind(at).bind(id).execute(&mut *tx).await?;
        let row = sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens t WHERE t.id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(token_from_row(&row)?.info))
    }
}

/// Revokes (at `?1`) every token minted, directly or not, by token `?2`.
const REVOKE_DESCENDANTS: &str = "WITH RECURSIVE minted (id) AS (\
       SELECT id FROM tokens WHERE parent_id = ?2 \
       UNION SELECT t.id FROM tokens t JOIN minted ON t.parent_id = minted.id) \
     UPDATE tokens SET revoked_at = ?1 WHERE id IN (SELECT id FROM minted) AND revoked_at IS NULL";

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
            parent_id: row.try_get("parent_id")?,
        },
    })
}
