//! Model pulls against a local hub: a real HTTP server on 127.0.0.1 speaking the
//! Hugging Face hub protocol (revision info, file tree, resolve with redirects, Range),
//! whose large files are served by a second server on 127.0.0.2. Also: an ordinary
//! job cannot reach the network through `wasi:http`.

use crate::{TestServer, sha256_hex};
use jobhost_model::SubmitRequest;
use jobhost_model::{EventKind, Job, JobStatus, LogStream};
use jobhost_server::ServerConfig;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MODEL: &str = "acme/tiny";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_test_token";
const BIG: &str = "weights/big.bin";
const BIG_SIZE: usize = 6 << 20;

/// A file of the test repo.
#[derive(Clone)]
struct RepoFile {
    path: &'static str,
    data: Vec<u8>,
    /// Stored with LFS: listed with a sha256 and served from the file host by redirect.
    lfs: bool,
}

impl RepoFile {
    fn etag(&self) -> String {
        if self.lfs { sha256_hex(&self.data) } else { sha256_hex(&self.data)[..40].to_owned() }
    }
}

fn repo_files() -> Vec<RepoFile> {
    let big: Vec<u8> = (0..BIG_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    vec![
        RepoFile { path: "config.json", data: br#"{"model_type":"tiny"}"#.to_vec(), lfs: false },
        RepoFile { path: "docs/README.md", data: b"# tiny\n".to_vec(), lfs: false },
        RepoFile { path: "pkg/__init__.py", data: Vec::new(), lfs: false },
        RepoFile { path: BIG, data: big, lfs: true },
        RepoFile { path: "tiny-q4_k_m.gguf", data: vec![4u8; 100_000], lfs: true },
        RepoFile { path: "tiny-f16.gguf", data: vec![16u8; 200_000], lfs: true },
    ]
}

/// `(server, request line, authorization, range)` of one request.
type Seen = (String, String, Option<String>, Option<String>);

/// Shared state of the hub and its file hosts.
#[derive(Default)]
struct HubState {
    files: Vec<RepoFile>,
    /// `host:port` large files are redirected to.
    redirect_to: Mutex<String>,
    /// Bytes of file contents served (hub and file hosts).
    bytes_served: AtomicU64,
    /// Delay between 64 KiB pieces of a large file, ms.
    throttle_ms: AtomicU64,
    /// Serve the large file with one byte changed.
    corrupt: AtomicBool,
    /// `(server, request line, authorization, range)` of every request.
    requests: Mutex<Vec<Seen>>,
    /// Connections accepted by the server on 127.0.0.3 (which must see none).
    forbidden_connections: AtomicU64,
}

struct Hub {
    state: Arc<HubState>,
    hub: SocketAddr,
    files: SocketAddr,
    forbidden: SocketAddr,
}

impl Hub {
    async fn start() -> Hub {
        let state = Arc::new(HubState { files: repo_files(), ..HubState::default() });
        let hub = serve(([127, 0, 0, 1], 0).into(), "hub", state.clone()).await;
        let files = serve(([127, 0, 0, 2], 0).into(), "files", state.clone()).await;
        let forbidden = serve(([127, 0, 0, 3], 0).into(), "forbidden", state.clone()).await;
        *state.redirect_to.lock().unwrap() = files.to_string();
        Hub { state, hub, files, forbidden }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.hub)
    }

    fn served(&self) -> u64 {
        self.state.bytes_served.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Server settings pointing pulls at this hub, its file host 127.0.0.2 allowed.
    fn config(&self, c: &mut ServerConfig) {
        c.hub.endpoint = self.endpoint();
        c.hub.token = Some(TOKEN.into());
        c.hub.file_hosts = vec!["127.0.0.2".into()];
    }
}

async fn serve(addr: SocketAddr, name: &'static str, state: Arc<HubState>) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if name == "forbidden" {
                state.forbidden_connections.fetch_add(1, Ordering::SeqCst);
            }
            let state = state.clone();
            tokio::spawn(async move {
                let _ = handle(stream, name, local, state).await;
            });
        }
    });
    local
}

/// One request per connection: parse it, answer, close.
async fn handle(mut stream: TcpStream, name: &str, local: SocketAddr, state: Arc<HubState>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut piece).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&piece[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    state.requests.lock().unwrap().push((
        name.to_owned(),
        request_line.clone(),
        headers.get("authorization").cloned(),
        headers.get("range").cloned(),
    ));
    let _ = local;

    let json_reply = |status: u16, body: Value| {
        (status, vec![("content-type".to_owned(), "application/json".to_owned())], body.to_string().into_bytes())
    };
    let prefix = format!("/api/models/{MODEL}/");
    if name == "hub" && path.starts_with("/api/models/") {
        let Some(rest) = path.strip_prefix(&prefix) else {
            let (s, h, b) = json_reply(404, json!({"error": "Repository not found"}));
            return respond(&mut stream, s, &h, &b).await;
        };
        if let Some(rev) = rest.strip_prefix("revision/") {
            let (s, h, b) = if rev == "main" || rev == COMMIT {
                json_reply(200, json!({"id": MODEL, "sha": COMMIT}))
            } else {
                json_reply(404, json!({"error": format!("Invalid rev id: {rev}")}))
            };
            return respond(&mut stream, s, &h, &b).await;
        }
        if rest.starts_with(&format!("tree/{COMMIT}")) {
            let tree: Vec<Value> = state
                .files
                .iter()
                .map(|f| {
                    let mut e = json!({"type": "file", "path": f.path, "size": f.data.len(), "oid": &f.etag()[..40.min(f.etag().len())]});
                    if f.lfs {
                        e["size"] = json!(134);
                        e["lfs"] = json!({"oid": f.etag(), "size": f.data.len(), "pointerSize": 134});
                    }
                    e
                })
                .chain([json!({"type": "directory", "path": "docs", "size": 0, "oid": "d".repeat(40)})])
                .collect();
            let (s, h, b) = json_reply(200, Value::Array(tree));
            return respond(&mut stream, s, &h, &b).await;
        }
        let (s, h, b) = json_reply(404, json!({"error": "Revision not found"}));
        return respond(&mut stream, s, &h, &b).await;
    }
    let resolve = format!("/{MODEL}/resolve/{COMMIT}/");
    if name == "hub" {
        let Some(file) = path.strip_prefix(&resolve).and_then(|p| state.files.iter().find(|f| f.path == p)) else {
            return respond(&mut stream, 404, &[("x-error-message".into(), "Entry not found".into())], b"").await;
        };
        let mut headers = vec![("x-repo-commit".to_owned(), COMMIT.to_owned())];
        if file.lfs {
            let to = state.redirect_to.lock().unwrap().clone();
            headers.push(("location".into(), format!("http://{to}/blobs/{}", file.etag())));
            headers.push(("x-linked-etag".into(), format!("\"{}\"", file.etag())));
            headers.push(("x-linked-size".into(), file.data.len().to_string()));
            return respond(&mut stream, 302, &headers, b"").await;
        }
        headers.push(("etag".into(), format!("\"{}\"", file.etag())));
        state.bytes_served.fetch_add(file.data.len() as u64, Ordering::SeqCst);
        return respond(&mut stream, 200, &headers, &file.data).await;
    }
    // The file hosts: /blobs/<sha256>, with Range.
    let Some(file) = path.strip_prefix("/blobs/").and_then(|sha| state.files.iter().find(|f| f.lfs && f.etag() == sha))
    else {
        return respond(&mut stream, 404, &[], b"no such blob").await;
    };
    let mut data = file.data.clone();
    if state.corrupt.load(Ordering::SeqCst) {
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
    }
    let start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let (status, body, mut extra) = match start {
        Some(s) if s < data.len() => (
            206,
            &data[s..],
            vec![("content-range".to_owned(), format!("bytes {s}-{}/{}", data.len() - 1, data.len()))],
        ),
        Some(_) => return respond(&mut stream, 416, &[], b"").await,
        None => (200, &data[..], Vec::new()),
    };
    extra.push(("accept-ranges".into(), "bytes".into()));
    let head = head_text(status, &extra, body.len());
    stream.write_all(head.as_bytes()).await?;
    for chunk in body.chunks(64 << 10) {
        let delay = state.throttle_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        stream.write_all(chunk).await?;
        state.bytes_served.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
    stream.flush().await
}

fn head_text(status: u16, headers: &[(String, String)], len: usize) -> String {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: {len}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    stream.write_all(head_text(status, headers, body.len()).as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

// ---- helpers ----

async fn pull(t: &TestServer, params: Value) -> Value {
    t.client.call::<Value>("models.pull", params).await.unwrap()
}

async fn pull_and_wait(t: &TestServer, params: Value) -> Job {
    let submitted = pull(t, params).await;
    assert_eq!(submitted["created"], json!(true), "{submitted}");
    let id = submitted["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["job"]["kind"], json!("pull"));
    t.wait(&id).await
}

fn repo_dir(t: &TestServer) -> PathBuf {
    t.dir.path().join("models").join("models--acme--tiny")
}

fn blob(t: &TestServer, f: &RepoFile) -> PathBuf {
    repo_dir(t).join("blobs").join(f.etag())
}

fn big() -> RepoFile {
    repo_files().into_iter().find(|f| f.path == BIG).unwrap()
}

/// The snapshot has exactly `expected` (byte for byte), each a relative symlink to its blob.
fn assert_snapshot(t: &TestServer, expected: &[RepoFile]) {
    let snap = repo_dir(t).join("snapshots").join(COMMIT);
    for f in expected {
        let link = snap.join(f.path);
        let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        assert!(target.is_relative(), "{target:?}");
        assert!(target.to_str().unwrap().ends_with(&format!("blobs/{}", f.etag())), "{target:?}");
        let got = std::fs::read(&link).unwrap();
        assert!(got == f.data, "{} differs from the hub's file", f.path);
    }
    let mut on_disk: Vec<String> =
        walk(&snap).into_iter().map(|p| p.strip_prefix(&snap).unwrap().to_str().unwrap().to_owned()).collect();
    let mut want: Vec<String> = expected.iter().map(|f| f.path.to_owned()).collect();
    on_disk.sort();
    want.sort();
    assert_eq!(on_disk, want);
    assert_eq!(std::fs::read_to_string(repo_dir(t).join("refs/main")).unwrap(), COMMIT);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Waits until the hub has noticed closed connections (its byte count stops moving).
async fn settle(hub: &Hub) -> u64 {
    let mut last = hub.served();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = hub.served();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn without_f16() -> Vec<RepoFile> {
    repo_files().into_iter().filter(|f| f.path != "tiny-f16.gguf").collect()
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_fills_the_cache_and_a_second_pull_downloads_nothing() {
    let hub = Hub::start().await;
    let t = TestServer::start_with(|c| hub.config(c)).await;
    let pulled = |m: &std::collections::HashMap<String, f64>| m.get("jobhost_pull_bytes_total{}").copied();
    assert_eq!(pulled(&crate::metrics::scrape(&t).await), Some(0.0));

    let job = pull_and_wait(&t, json!({"model": MODEL, "quantize": "q4_k_m", "init": {"ctx": 2048}})).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let files = without_f16();
    let total: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    assert_eq!(pulled(&crate::metrics::scrape(&t).await), Some(total as f64), "/metrics counts the bytes downloaded");
    let progress = job.progress.clone().unwrap();
    assert_eq!(
        (progress.done, progress.total),
        (total, Some(total)),
        "progress is bytes on disk of the selected files"
    );
    assert_snapshot(&t, &files);
    let f16 = repo_files().into_iter().find(|f| f.path == "tiny-f16.gguf").unwrap();
    assert!(!blob(&t, &f16).exists(), "quantize q4_k_m leaves the f16 variant out");
    let log = t.stream_text(&job.id, LogStream::Log).await;
    assert!(log.contains("no inference executor is configured"), "{log}");

    // The token went to the hub only, never to the file host it redirected to.
    let requests = hub.requests();
    assert!(requests.iter().any(|(s, _, a, _)| s == "hub" && a.as_deref() == Some(&format!("Bearer {TOKEN}"))));
    assert!(requests.iter().filter(|(s, ..)| s == "files").all(|(_, _, a, _)| a.is_none()), "{requests:?}");
    assert!(requests.iter().any(|(s, ..)| s == "files"), "the large files came from the file host");
    assert!(!serde_json::to_string(&job).unwrap().contains(TOKEN), "the token is not on the job record");

    // The record keeps the progress across a restart.
    let mut t = t;
    t.restart_with(|c| hub.config(c)).await;
    let again = t.client.get(&job.id).await.unwrap();
    assert_eq!(again.progress.as_ref().map(|p| (p.done, p.total)), Some((total, Some(total))));

    // A second pull of the same revision fetches nothing.
    let before = hub.served();
    let resolves = hub.requests().iter().filter(|(_, l, ..)| l.contains("/resolve/")).count();
    let second = pull_and_wait(&t, json!({"model": MODEL, "quantize": "q4_k_m"})).await;
    assert_eq!(second.status, JobStatus::Completed, "{second:?}");
    assert_eq!(hub.served(), before, "no file bytes are served for a complete snapshot");
    assert_eq!(
        pulled(&crate::metrics::scrape(&t).await),
        Some(0.0),
        "a cached pull downloads nothing (since the restart)"
    );
    assert_eq!(hub.requests().iter().filter(|(_, l, ..)| l.contains("/resolve/")).count(), resolves);
    assert_snapshot(&t, &files);

    // huggingface_hub finds the snapshot offline in the cache.
    let script = format!(
        "from huggingface_hub import snapshot_download, hf_hub_download\n\
         p = snapshot_download('{MODEL}')\n\
         print(p)\n\
         print(open(hf_hub_download('{MODEL}', 'config.json')).read())\n"
    );
    // The Python with huggingface_hub (`PYTHON` overrides `python3`, as CI sets it).
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .env("HF_HUB_CACHE", t.dir.path().join("models"))
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .expect("python runs (CI installs huggingface_hub in the venv named by $PYTHON)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "huggingface_hub (pip install huggingface_hub) could not use the cache: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("snapshots/{COMMIT}")), "{stdout}");
    assert!(stdout.contains(r#"{"model_type":"tiny"}"#), "{stdout}");

    // models.list reads the cache; models.delete removes it.
    let list: Value = t.client.call("models.list", json!({})).await.unwrap();
    let entries = list["models"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["repo"], json!(MODEL));
    assert_eq!(entries[0]["revision"], json!("main"));
    assert_eq!(entries[0]["commit"], json!(COMMIT));
    assert_eq!(entries[0]["size"], json!(total));
    let del = json!({"model": MODEL});
    let _: Value = t.client.call("models.delete", del.clone()).await.unwrap();
    assert!(!repo_dir(&t).exists());
    let err = t.client.call::<Value>("models.delete", del).await.unwrap_err().to_string();
    assert!(err.contains("not in the cache"), "{err}");

    // The puller's name is reserved.
    let err = t.client.install("model-pull", &std::fs::read(jobhost_tests::HELLO_WASM).unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pull_resumes_with_range_requests() {
    let hub = Hub::start().await;
    hub.state.throttle_ms.store(40, Ordering::SeqCst);
    let t = TestServer::start_with(|c| hub.config(c)).await;

    let submitted = pull(&t, json!({"model": MODEL, "allow_patterns": [BIG]})).await;
    let id = submitted["job"]["id"].as_str().unwrap().to_owned();
    // A second request while it runs gets the same job.
    let dup = pull(&t, json!({"model": MODEL, "allow_patterns": [BIG]})).await;
    assert_eq!((dup["created"].clone(), dup["job"]["id"].clone()), (json!(false), json!(id)));
    // Another revision of the same repo would share its blobs: refused while it runs.
    let other = t.client.call::<Value>("models.pull", json!({"model": MODEL, "revision": COMMIT})).await.unwrap_err();
    assert!(other.to_string().contains("is being pulled"), "{other}");
    // Progress is pushed while bytes arrive, at least every 250 ms (plus delivery).
    let ws = t.client.websocket().await.unwrap();
    let mut events = ws.subscribe(Some(&id)).await.unwrap();
    let mut seen: Vec<(tokio::time::Instant, u64)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.last().is_none_or(|(_, done)| *done < 3 << 20) {
        let ev = tokio::time::timeout_at(deadline, events.next()).await.expect("progress within 30 s");
        let ev = ev.unwrap().unwrap();
        if let Some(p) = ev.progress.filter(|_| ev.kind == EventKind::Progress) {
            assert_eq!(p.total, Some(BIG_SIZE as u64));
            seen.push((tokio::time::Instant::now(), p.done));
        }
    }
    let moving: Vec<_> = seen.iter().filter(|(_, d)| *d > 0).collect();
    assert!(moving.len() >= 5, "{} progress events while 3 MiB arrived", moving.len());
    for w in moving.windows(2) {
        assert!(w[1].1 >= w[0].1, "done never goes back");
        let gap = w[1].0 - w[0].0;
        assert!(gap < Duration::from_millis(1500), "a {gap:?} gap between progress events");
    }
    let cancelled = t.client.cancel(&id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let first = settle(&hub).await;
    let partial = repo_dir(&t).join("blobs").join(format!("{}.incomplete", big().etag()));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0 && kept < BIG_SIZE as u64, "a partial blob is kept: {kept} bytes");
    assert!(!blob(&t, &big()).exists());

    hub.state.throttle_ms.store(0, Ordering::SeqCst);
    let job = pull_and_wait(&t, json!({"model": MODEL, "allow_patterns": [BIG]})).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let second = hub.served() - first;
    assert!(second < BIG_SIZE as u64, "the second pull fetched {second} bytes, the whole file is {BIG_SIZE}");
    assert_eq!(second, BIG_SIZE as u64 - kept, "exactly the missing bytes are fetched");
    assert!(hub.requests().iter().any(|(s, _, _, r)| s == "files" && r.as_deref() == Some(&format!("bytes={kept}-"))));
    assert_eq!(std::fs::read(repo_dir(&t).join("snapshots").join(COMMIT).join(BIG)).unwrap(), big().data);
    assert!(!partial.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_cut_off_by_a_server_stop_resumes_after_the_restart() {
    let hub = Hub::start().await;
    hub.state.throttle_ms.store(40, Ordering::SeqCst);
    let mut t = TestServer::start_with(|c| hub.config(c)).await;
    let submitted = pull(&t, json!({"model": MODEL, "allow_patterns": [BIG]})).await;
    let id = submitted["job"]["id"].as_str().unwrap().to_owned();
    let partial = repo_dir(&t).join("blobs").join(format!("{}.incomplete", big().etag()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(tokio::time::Instant::now() < deadline, "no partial blob within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopping leaves the job exactly as a crash does; the restart recovers it.
    t.stop().await;
    settle(&hub).await;
    t.restart_with(|c| hub.config(c)).await;
    let recovered = t.wait(&id).await;
    assert_eq!(recovered.status, JobStatus::Failed, "{recovered:?}");
    let kept = std::fs::metadata(&partial).unwrap().len();

    hub.state.throttle_ms.store(0, Ordering::SeqCst);
    let before = hub.served();
    let job = pull_and_wait(&t, json!({"model": MODEL, "allow_patterns": [BIG]})).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let fetched = hub.served() - before;
    assert_eq!(fetched, BIG_SIZE as u64 - kept, "only the missing bytes are fetched");
    assert_eq!(std::fs::read(repo_dir(&t).join("snapshots").join(COMMIT).join(BIG)).unwrap(), big().data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_blob_fails_the_pull_and_is_discarded() {
    let hub = Hub::start().await;
    hub.state.corrupt.store(true, Ordering::SeqCst);
    let t = TestServer::start_with(|c| hub.config(c)).await;
    let job = pull_and_wait(&t, json!({"model": MODEL, "allow_patterns": [BIG]})).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(error.contains("sha256 mismatch") && error.contains(BIG), "{error}");
    let blobs = repo_dir(&t).join("blobs");
    assert!(!blobs.join(big().etag()).exists(), "no blob under that name");
    assert!(!blobs.join(format!("{}.incomplete", big().etag())).exists(), "nor a partial one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_repo_or_revision_fails_with_not_found() {
    let hub = Hub::start().await;
    let t = TestServer::start_with(|c| hub.config(c)).await;
    let job = pull_and_wait(&t, json!({"model": "acme/missing"})).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.clone().unwrap_or_default();
    assert!(error.contains("repository not found") && error.contains("Repository not found"), "{error}");
    // `detail` is the chain of causes, one per line, outermost first.
    let detail = job.detail.unwrap_or_default();
    let lines: Vec<&str> = detail.lines().collect();
    assert_eq!(lines.len(), 2, "{detail}");
    assert!(lines[0].starts_with("repository not found: acme/missing"), "{detail}");
    assert!(lines[1].starts_with("HTTP 404") && lines[1].contains("Repository not found"), "{detail}");
    assert!(!error.contains('\n'), "error stays one line: {error}");

    let job = pull_and_wait(&t, json!({"model": MODEL, "revision": "v9"})).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap_or_default();
    assert!(error.contains("repository not found") && error.contains("Invalid rev id: v9"), "{error}");

    let job = pull_and_wait(&t, json!({"model": MODEL, "quantize": "q8_0"})).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap_or_default();
    assert!(error.contains("quantize \"q8_0\"") && error.contains("tiny-f16.gguf"), "{error}");

    // Ended pulls older than N days are pruned with their records.
    let kept: Value = t.client.call("models.prune", json!({"older_than_days": 1})).await.unwrap();
    assert_eq!(kept["pruned"], json!(0));
    let pruned: Value = t.client.call("models.prune", json!({"older_than_days": 0})).await.unwrap();
    assert_eq!(pruned["pruned"], json!(3));
    let gone = t.client.get(&job.id).await.unwrap_err().to_string();
    assert!(gone.contains("not found"), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hub_fails_saying_so() {
    // A port that was just free: nothing listens there.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let t = TestServer::start_with(|c| c.hub.endpoint = format!("http://{free}")).await;
    let job = pull_and_wait(&t, json!({"model": MODEL})).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap_or_default();
    assert!(error.contains("is unreachable") && error.contains(&free.to_string()), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_host_not_allowed_fails_the_pull() {
    let hub = Hub::start().await;
    *hub.state.redirect_to.lock().unwrap() = hub.forbidden.to_string();
    let t = TestServer::start_with(|c| hub.config(c)).await;
    let job = pull_and_wait(&t, json!({"model": MODEL, "allow_patterns": [BIG]})).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(error.contains("denied") && error.contains("127.0.0.3") && error.contains("allowlist"), "{error}");
    assert_eq!(hub.state.forbidden_connections.load(Ordering::SeqCst), 0, "the host never connected there");
    let _ = hub.files;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_job_cannot_reach_the_network() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        }
    });
    let t = TestServer::start().await;
    t.install("http-probe", jobhost_tests::HTTP_PROBE_WASM).await;
    let req = SubmitRequest {
        plugin: "http-probe".into(),
        args: vec![format!("http://{addr}/")],
        ..SubmitRequest::default()
    };
    let job = t.client.submit(&req).await.unwrap().job;
    let job = t.wait(&job.id).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let stderr = t.stream_text(&job.id, LogStream::Stderr).await;
    assert!(stderr.contains("HttpRequestDenied"), "{stderr}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_job_cannot_use_native_transfers() {
    // `jobhost:plugin/transfer` is the puller's: another job that imports it links and
    // runs, but its copies (which the `/output` quota would not see) and hashing are
    // refused, and nothing is copied.
    let t = TestServer::start().await;
    t.install("transfer-probe", jobhost_tests::TRANSFER_PROBE_WASM).await;
    let req = SubmitRequest { plugin: "transfer-probe".into(), ..SubmitRequest::default() };
    let job = t.client.submit(&req).await.unwrap().job;
    let job = t.wait(&job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let stdout = t.stream_text(&job.id, LogStream::Stdout).await;
    assert!(stdout.contains("copy denied") && stdout.contains("absorb denied"), "{stdout}");
    let artifacts = t.client.artifacts(&job.id).await.unwrap();
    assert!(artifacts.iter().all(|a| a.size_bytes == 0), "nothing was copied: {artifacts:?}");
}

/// A pull submitted while the server is still compiling the puller at start installs
/// it once, beside that compile, and runs (here against a hub that is not there).
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_right_after_start_meets_the_puller_being_prepared() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let t = TestServer::start_with(|c| {
        c.hub.endpoint = format!("http://{free}");
        c.prepare_puller = true;
    })
    .await;
    let job = pull_and_wait(&t, json!({"model": MODEL})).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap_or_default();
    assert!(error.contains("is unreachable"), "{error}");
}
