//! A schema of its own in a database, made for one use and dropped after it: a test
//! server's records, or a benchmark's, kept apart from everything else in the database
//! (every node given the schema's URL shares it).

use crate::{Result, StoreError};
use jobhost_model::ids;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr as _;

/// A schema made by [`Scratch::create`]; dropped (with everything in it) by
/// [`Scratch::drop_now`], or when this value is dropped.
#[derive(Debug)]
pub struct Scratch {
    /// The schema's name.
    pub name: String,
    /// The database's URL, without the schema.
    pub base: String,
}

impl Scratch {
    /// Makes a new schema named `<prefix><uuid>` in the database at `base`.
    pub async fn create(base: &str, prefix: &str) -> Result<Scratch> {
        let name = ids::new(prefix);
        run(base, &format!("CREATE SCHEMA {name}")).await?;
        Ok(Scratch { name, base: base.to_owned() })
    }

    /// The database's URL with this schema first on the search path: what a node is
    /// given to keep its records here.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={}", self.base, self.name)
    }

    /// Drops the schema and everything in it now.
    pub async fn drop_now(mut self) -> Result<()> {
        let name = std::mem::take(&mut self.name);
        run(&self.base, &format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await
    }
}

impl Drop for Scratch {
    /// Best effort, on a thread of its own: the caller's runtime may be ending.
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let (base, sql) = (self.base.clone(), format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(run(&base, &sql)).ok()
        });
        let _ = dropped.join();
    }
}

/// Runs one statement of our own making (a schema name from [`ids::new`]) on a
/// connection of its own.
async fn run(base: &str, sql: &str) -> Result<()> {
    let open = |e: &dyn std::fmt::Display| StoreError::Open { path: "the Postgres URL".into(), reason: e.to_string() };
    let mut conn = PgConnectOptions::from_str(base).map_err(|e| open(&e))?.connect().await.map_err(|e| open(&e))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}
