//! End-to-end tests: a real server on `127.0.0.1:0`, a real JSON-RPC client over HTTP
//! and WebSocket, and guest components built from source in this repository.
//!
//! One test binary (so the suite links once), one module per area.

// Harness code outside `#[test]` functions: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod connections;
mod containers;
mod core;
mod dashboard;
mod discover;
mod files;
mod gpus;
mod install;
mod layers;
mod lifecycle;
mod metrics;
mod pull;
mod retries;
mod sandbox;
mod workers;
mod workflows;

use jobhost_client::Client;
use jobhost_model::SubmitRequest;
use jobhost_model::{Cpus, Job, JobStatus, LogChunk, LogStream};
use jobhost_server::{self as server, RunningServer, ServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A client of `server` with the first admin's token.
pub fn admin_client(server: &RunningServer) -> Client {
    Client::with_token(&server.url(), Some(&server.admin_token().unwrap())).unwrap()
}

/// A server on a temporary data dir, stopped when the test ends. With
/// `JOBHOST_TEST_BACKEND=postgres` its records are in a Postgres schema of its own (in
/// the database `JOBHOST_TEST_DATABASE_URL` names), kept across restarts and dropped
/// with the server; otherwise in SQLite in the data dir, as by default.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub database: Option<jobhost_store::testdb::PgSchema>,
}

/// Whether the suite runs against Postgres (`JOBHOST_TEST_BACKEND=postgres`) rather
/// than SQLite; any other value is refused, so a typo cannot run the wrong backend.
pub fn on_postgres() -> bool {
    match std::env::var("JOBHOST_TEST_BACKEND").as_deref() {
        Err(_) | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("JOBHOST_TEST_BACKEND is sqlite or postgres, not {other:?}"),
    }
}

impl TestServer {
    /// A fresh server with default settings.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A fresh server with settings adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let database = if on_postgres() { Some(jobhost_store::testdb::PgSchema::new().await) } else { None };
        let server = start_at(dir.path(), database.as_ref(), tweak).await;
        let client = admin_client(&server);
        TestServer { server: Some(server), client, dir, database }
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    /// Stops the server, keeping the data dir.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// Starts a new server on the same data dir.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut ServerConfig)) {
        self.stop().await;
        let server = start_at(self.dir.path(), self.database.as_ref(), tweak).await;
        self.client = admin_client(&server);
        self.server = Some(server);
    }

    /// Installs a fixture component from its path.
    pub async fn install(&self, name: &str, path: &str) {
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"));
        self.client.install(name, &wasm).await.unwrap();
    }

    /// Submits `plugin` with `args` and waits for it to end.
    pub async fn run(&self, plugin: &str, args: &[&str]) -> Job {
        let job = self.submit(plugin, args).await;
        self.wait(&job.id).await
    }

    pub async fn submit(&self, plugin: &str, args: &[&str]) -> Job {
        let req = SubmitRequest {
            plugin: plugin.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..SubmitRequest::default()
        };
        self.client.submit(&req).await.unwrap().job
    }

    /// Waits (up to a minute) for the job to end.
    pub async fn wait(&self, id: &str) -> Job {
        let job = self.client.wait(id, Duration::from_secs(60)).await.unwrap();
        assert!(job.status.is_terminal(), "job {id} did not end: {job:?}");
        job
    }

    /// Every log chunk of a job.
    pub async fn logs(&self, id: &str) -> Vec<LogChunk> {
        let mut all = Vec::new();
        let mut next = 0;
        loop {
            let page = self.client.logs(id, next, None).await.unwrap();
            next = page.next_seq;
            let done = page.chunks.is_empty();
            all.extend(page.chunks);
            if done {
                return all;
            }
        }
    }

    /// The text of one stream of a job's log.
    pub async fn stream_text(&self, id: &str, stream: LogStream) -> String {
        self.logs(id).await.into_iter().filter(|c| c.stream == stream).map(|c| c.data).collect()
    }
}

async fn start_at(
    dir: &Path,
    database: Option<&jobhost_store::testdb::PgSchema>,
    tweak: impl FnOnce(&mut ServerConfig),
) -> RunningServer {
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.database_url = database.map(|d| server::DatabaseUrl(d.url()));
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.concurrency = 2;
    // A test server compiles no model puller at start unless the test is about it
    // (see `install.rs`): dozens of servers would each compile it.
    config.prepare_puller = false;
    tweak(&mut config);
    server::start(config).await.unwrap()
}

/// POSTs a raw JSON body to the server with the admin's token and returns the
/// decoded JSON answer, so a test sees exactly what any HTTP client sees.
pub async fn post_raw(t: &TestServer, body: &str) -> serde_json::Value {
    let auth = format!("Bearer {}", t.server().admin_token().unwrap());
    let (_, json) = http_raw(t.server().local_addr, "POST", "/", Some(&auth), body.as_bytes()).await;
    json
}

/// Sends one raw HTTP/1.1 request; returns the status and the body as JSON (`Null`
/// when it is not JSON).
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    http_raw_from(connect(addr).await, method, path, authorization, body).await
}

/// A connection to `addr` from `127.0.0.1`.
pub async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    connect_from([127, 0, 0, 1], addr).await
}

/// A connection to `addr` from the loopback address `from` (any of 127.0.0.0/8: each is
/// a client address of its own to the server).
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// [`http_raw`] over the connection `s`.
pub async fn http_raw_from(
    mut s: tokio::net::TcpStream,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.peer_addr().unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// `GET path` on `addr` (with `token` as the bearer): the status, the head and the
/// body as text.
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), head.to_owned(), body.to_owned())
}

/// Fails the test, showing both, unless `text` contains `part`.
#[track_caller]
pub fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} is not in {text:?}");
}

/// Polls until `f` holds (at most `secs` seconds).
pub async fn eventually<F, Fut>(secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {secs} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
