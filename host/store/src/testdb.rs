//! A Postgres schema of its own per test, for the backend's tests here and for the
//! end-to-end suite run against Postgres: `JOBHOST_TEST_DATABASE_URL` names a database
//! the tests may create schemas in (`.ci/test` starts one); each [`PgSchema`] is
//! dropped, with everything in it, when its value is, so tests run in parallel.
//! Without the variable, a test that asks for one fails, never skips.

// Test support: a failed setup step is a failed test.
#![allow(clippy::panic)]

use crate::postgres::scratch::Scratch;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr as _;

/// The server's URL, or a failed test saying how to give one.
pub fn base_url() -> String {
    std::env::var("JOBHOST_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "set JOBHOST_TEST_DATABASE_URL to a Postgres database the tests may create schemas in, \
             e.g. postgres://jobhost:jobhost@127.0.0.1:5432/jobhost_test (.ci/test sets it up)"
        )
    })
}

/// A schema of its own for one test; dropped (with everything in it) when this is.
pub struct PgSchema {
    /// The schema, in `JOBHOST_TEST_DATABASE_URL`; dropped when this is.
    pub(crate) scratch: Scratch,
}

impl PgSchema {
    /// Creates the schema, failing the test when there is no server to make it on.
    pub async fn new() -> PgSchema {
        let scratch =
            Scratch::create(&base_url(), "jobhost_test_").await.unwrap_or_else(|e| panic!("creating a schema: {e}"));
        PgSchema { scratch }
    }

    /// The URL of the test database with this schema first on the search path.
    pub fn url(&self) -> String {
        self.scratch.url()
    }

    /// Every row of `table` in this schema as text (`row::text`), one per line: what a
    /// reader of the database would see, for tests about what is stored.
    pub async fn table_text(&self, table: &str) -> String {
        let mut conn = PgConnectOptions::from_str(&self.url())
            .unwrap_or_else(|e| panic!("JOBHOST_TEST_DATABASE_URL: {e}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to JOBHOST_TEST_DATABASE_URL: {e}"));
        let sql = format!("SELECT t::text FROM {}.{table} t", self.scratch.name);
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        let _ = sqlx::Connection::close(conn).await;
        rows.join("\n")
    }

    /// The URL with an application name of its own, to find the store's connections.
    pub fn url_named(&self, app: &str) -> String {
        format!("{}&application_name={app}", self.url())
    }
}
