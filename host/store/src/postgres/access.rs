//! Users and API tokens on Postgres.

use super::PgStore;
use crate::{AccessStore, Result, StoreError, StoredToken};
use jobhost_model::{Scope, TokenInfo, User, ids};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// Every column of a user row.
macro_rules! user_columns {
    () => {
        concat!("id, name, is_admin, ", ts!("created_at"))
    };
}

/// Every column of a token row (alias `t`).
macro_rules! token_columns {
    () => {
        concat!(
            "t.id, t.user_id, t.hash, t.prefix, t.scopes, ",
            ts!("t.expires_at", "expires_at"),
            ", ",
            ts!("t.last_used_at", "last_used_at"),
            ", ",
            ts!("t.revoked_at", "revoked_at"),
            ", ",
            ts!("t.created_at", "created_at"),
            ", t.parent_id"
        )
    };
}

#[async_trait::async_trait]
impl AccessStore for PgStore {
    async fn ensure_user(&self, name: &str, is_admin: bool) -> Result<String> {
        sqlx::query(
            "INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4::timestamptz) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(ids::new(ids::USER))
        .bind(name)
        .bind(is_admin)
        .bind(ids::now())
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM users WHERE name = $1").bind(name).fetch_one(&self.pool).await?)
    }

    async fn insert_user(&self, user: &User) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4::timestamptz) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(user.is_admin)
        .bind(&user.created_at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn find_user(&self, key: &str) -> Result<Option<User>> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1 OR name = $1 LIMIT 1"))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn insert_token(&self, t: &StoredToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_id, hash, prefix, scopes, expires_at, created_at, parent_id) \
             VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7::timestamptz, $8)",
        )
        .bind(&t.info.id)
        .bind(&t.info.user_id)
        .bind(&t.hash)
        .bind(&t.info.prefix)
        .bind(scopes_text(&t.info.scopes))
        .bind(&t.info.expires_at)
        .bind(&t.info.created_at)
        .bind(&t.info.parent_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<(StoredToken, User)>> {
        let sql = concat!(
            "SELECT ",
            token_columns!(),
            ", u.name AS user_name, u.is_admin AS user_is_admin, ",
            ts!("u.created_at", "user_created_at"),
            " FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = $1"
        );
        let Some(row) = sqlx::query(sql).bind(hash).fetch_optional(&self.pool).await? else {
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
        sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens t WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| token_from_row(&r).map(|t| t.info))
            .transpose()
    }

    async fn touch_token(&self, id: &str, at: &str) -> Result<()> {
        sqlx::query("UPDATE tokens SET last_used_at = $1::timestamptz WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenInfo>> {
        let sql = concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens t WHERE ($1::text IS NULL OR t.user_id = $1) ORDER BY t.id"
        );
        sqlx::query(sql)
            .bind(owner)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| token_from_row(r).map(|t| t.info))
            .collect()
    }

    async fn revoke_token(&self, id: &str, owner: Option<&str>, at: &str) -> Result<Option<TokenInfo>> {
        let sql = concat!(
            "UPDATE tokens t SET revoked_at = $1::timestamptz WHERE t.id = $2 \
             AND ($3::text IS NULL OR t.user_id = $3) AND t.revoked_at IS NULL RETURNING ",
            token_columns!()
        );
        let mut tx = self.pool.begin().await?;
        let revoked =
            sqlx::query(sql).bind(at).bind(id).bind(owner).fetch_optional(&mut *tx).await?.map(|r| token_from_row(&r));
        if revoked.is_some() {
            sqlx::query(REVOKE_DESCENDANTS).bind(at).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        revoked.transpose().map(|t| t.map(|t| t.info))
    }
}

/// Revokes (at `$1`) every token minted, directly or not, by token `$2`.
const REVOKE_DESCENDANTS: &str = "WITH RECURSIVE minted (id) AS (\
       SELECT id FROM tokens WHERE parent_id = $2 \
       UNION SELECT t.id FROM tokens t JOIN minted ON t.parent_id = minted.id) \
     UPDATE tokens SET revoked_at = $1::timestamptz WHERE id IN (SELECT id FROM minted) AND revoked_at IS NULL";

fn scopes_text(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

fn user_from_row(row: &PgRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        is_admin: row.try_get("is_admin")?,
        created_at: row.try_get("created_at")?,
    })
}

fn token_from_row(row: &PgRow) -> Result<StoredToken> {
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
