//! `jobhost bench-pull`: the model puller against `curl` on the same files, in one run.
//!
//! Starts a local hub on 127.0.0.1 (revision, tree and resolve endpoints; large files
//! redirected to a file host on 127.0.0.2 that honours Range) serving a generated repo
//! of `--size-mb` MiB in `--files` LFS files, and an embedded server on a temporary
//! data dir pointed at it. A small warm-up pull installs and compiles the puller; then
//! the whole repo is pulled (download, sha256 check, cache layout) and, for comparison,
//! `curl -L` fetches the same files through the same redirects into a directory (and,
//! as the work a pull also does, `sha256sum` checks them).
//!
//! The hub runs on a thread and runtime of its own, as a real hub is another process:
//! on the server's runtime it would take worker time from the pull it serves, and not
//! from `curl`, which is a process of its own.

use anyhow::{Context as _, bail};
use clap::Args;
use jobhost_client::Client;
use jobhost_model::Submitted;
use jobhost_model::{Job, JobStatus};
use jobhost_server::{self as server, ServerConfig};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MODEL: &str = "bench/model";
const COMMIT: &str = "b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";

#[derive(Debug, Args)]
pub(super) struct BenchPullArgs {
    /// Size of the generated repo, MiB.
    #[arg(long, default_value_t = 100)]
    size_mb: u64,
    /// Number of large files it is split into.
    #[arg(long, default_value_t = 4)]
    files: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Also print the pull job's log (per-file timings).
    #[arg(long)]
    verbose: bool,
    /// Time the first pull of the fresh server instead of one after a warm-up pull:
    /// the server prepares its puller in the background at start, and the bench
    /// waits for that (the compiled puller appearing in the cache) before pulling.
    #[arg(long)]
    first: bool,
}

/// Longest the bench waits for the server's background preparation of the puller.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(120);

struct File {
    path: String,
    data: Vec<u8>,
    sha256: String,
}

struct Repo {
    files: Vec<File>,
    files_host: std::sync::Mutex<String>,
}

pub(super) async fn exec(args: BenchPullArgs) -> anyhow::Result<ExitCode> {
    if args.files == 0 || args.size_mb == 0 {
        bail!("--size-mb and --files must be at least 1");
    }
    let per_file = (args.size_mb << 20) / args.files;
    let mut files = vec![make_file("config.json".into(), br#"{"model_type":"bench"}"#.to_vec())];
    for i in 0..args.files {
        // Incompressible-looking bytes: a cheap xorshift stream.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ i;
        let data: Vec<u8> = (0..per_file)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        files.push(make_file(format!("model-{i:05}-of-{:05}.safetensors", args.files), data));
    }
    let total: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    let repo = Arc::new(Repo { files, files_host: std::sync::Mutex::new(String::new()) });
    let hub = start_hub(repo.clone()).await?;

    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.hub.endpoint = format!("http://{hub}");
    config.hub.file_hosts = vec!["127.0.0.2".into()];
    let server = server::start(config).await?;
    let client = Client::with_token(&server.url(), Some(&server.admin_token()?))?;

    if args.first {
        wait_for_compiled(&dir.path().join("data").join("plugins").join("cache")).await?;
    } else {
        // Warm-up: installs and compiles the puller, fetches the small file.
        let warm = pull(&client, serde_json::json!({"model": MODEL, "allow_patterns": ["config.json"]})).await?;
        if warm.status != JobStatus::Completed {
            bail!("the warm-up pull failed: {}", warm.error.unwrap_or_default());
        }
    }
    let started = Instant::now();
    let job = pull(&client, serde_json::json!({"model": MODEL})).await?;
    let pull_time = started.elapsed();
    if job.status != JobStatus::Completed {
        bail!("the pull failed: {}", job.error.unwrap_or_default());
    }

    if args.verbose {
        let page = client.logs(&job.id, 0, Some(1000)).await?;
        for chunk in page.chunks {
            eprint!("{}", chunk.data);
        }
    }
    let curl_dir = dir.path().join("curl");
    std::fs::create_dir_all(&curl_dir)?;
    let started = Instant::now();
    for f in repo.files.iter().skip(1) {
        let status = tokio::process::Command::new("curl")
            .args(["-sSfL", "-o"])
            .arg(curl_dir.join(&f.path))
            .arg(format!("http://{hub}/{MODEL}/resolve/{COMMIT}/{}", f.path))
            .status()
            .await
            .context("running curl (is it installed?)")?;
        if !status.success() {
            bail!("curl failed: {status}");
        }
    }
    let curl_time = started.elapsed();
    // What the pull also does: check every file's sha256 (sha256sum, native code).
    let started = Instant::now();
    let status = tokio::process::Command::new("sha256sum")
        .args(repo.files.iter().skip(1).map(|f| curl_dir.join(&f.path)))
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("running sha256sum")?;
    if !status.success() {
        bail!("sha256sum failed: {status}");
    }
    let curl_sha_time = curl_time + started.elapsed();
    server.stop().await;

    let mb = total as f64 / f64::from(1 << 20);
    let ratio = pull_time.as_secs_f64() / curl_time.as_secs_f64().max(1e-9);
    let ratio_sha = pull_time.as_secs_f64() / curl_sha_time.as_secs_f64().max(1e-9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bytes": total, "files": args.files,
                "pull_s": pull_time.as_secs_f64(), "curl_s": curl_time.as_secs_f64(),
                "curl_sha256sum_s": curl_sha_time.as_secs_f64(),
                "pull_mib_per_s": mb / pull_time.as_secs_f64(), "curl_mib_per_s": mb / curl_time.as_secs_f64(),
                "ratio": ratio, "ratio_vs_curl_sha256sum": ratio_sha,
            })
        );
    } else {
        println!("repo: {mb:.0} MiB in {} files, served from 127.0.0.1 with redirects to 127.0.0.2", args.files);
        println!(
            "jobhost pull: {:>7.3} s  ({:.0} MiB/s, sha256-verified, HF cache layout)",
            pull_time.as_secs_f64(),
            mb / pull_time.as_secs_f64()
        );
        println!("curl -L:      {:>7.3} s  ({:.0} MiB/s)", curl_time.as_secs_f64(), mb / curl_time.as_secs_f64());
        println!(
            "curl + sha256sum: {:>7.3} s  ({:.0} MiB/s)",
            curl_sha_time.as_secs_f64(),
            mb / curl_sha_time.as_secs_f64()
        );
        println!("ratio pull/curl: {ratio:.2}x (target: at most 1.2x); pull/(curl + sha256sum): {ratio_sha:.2}x");
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until a compiled component is in `cache`: the server's start-up preparation
/// of the puller has finished.
async fn wait_for_compiled(cache: &std::path::Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + PREPARE_TIMEOUT;
    loop {
        let compiled = std::fs::read_dir(cache)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "cwasm"));
        if compiled {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not prepare its puller within {} s", PREPARE_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn make_file(path: String, data: Vec<u8>) -> File {
    let sha256 = hex::encode(Sha256::digest(&data));
    File { path, data, sha256 }
}

async fn pull(client: &Client, params: serde_json::Value) -> anyhow::Result<Job> {
    let submitted: Submitted = client.call("models.pull", params).await?;
    Ok(client.wait(&submitted.job.id, Duration::from_secs(3600)).await?)
}

/// Starts the hub (127.0.0.1) and its file host (127.0.0.2) on a thread of their own
/// that lives as long as the process; returns the hub's address.
async fn start_hub(repo: Arc<Repo>) -> anyhow::Result<SocketAddr> {
    let (started, addr) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("bench-hub".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = started.send(Err(anyhow::Error::new(e).context("starting the hub's runtime")));
                return;
            }
        };
        runtime.block_on(async move {
            let addrs = async {
                let hub = serve(([127, 0, 0, 1], 0).into(), true, repo.clone()).await?;
                let files = serve(([127, 0, 0, 2], 0).into(), false, repo.clone()).await?;
                *repo.files_host.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = files.to_string();
                anyhow::Ok(hub)
            };
            let ok = addrs.await;
            let serving = ok.is_ok();
            let _ = started.send(ok);
            if serving {
                std::future::pending::<()>().await;
            }
        });
    })?;
    addr.await.context("the hub's thread ended")?
}

async fn serve(addr: SocketAddr, is_hub: bool, repo: Arc<Repo>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let repo = repo.clone();
            tokio::spawn(async move {
                let _ = handle(stream, is_hub, &repo).await;
            });
        }
    });
    Ok(local)
}

/// One request per connection; the hub's API and resolve routes, or the file host's
/// `/blobs/<sha256>` with Range.
async fn handle(mut stream: TcpStream, is_hub: bool, repo: &Repo) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
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
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let range = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_owned))
        .and_then(|r| r.trim().trim_end_matches('-').parse::<usize>().ok());
    let api = format!("/api/models/{MODEL}/");
    let resolve = format!("/{MODEL}/resolve/{COMMIT}/");
    if is_hub {
        if let Some(rest) = path.strip_prefix(&api) {
            let body = if rest.starts_with("revision/") {
                serde_json::json!({"id": MODEL, "sha": COMMIT})
            } else {
                serde_json::Value::Array(
                    repo.files
                        .iter()
                        .map(|f| {
                            let mut e = serde_json::json!({"type": "file", "path": f.path, "size": f.data.len(), "oid": &f.sha256[..40]});
                            if f.data.len() > 1024 {
                                e["lfs"] = serde_json::json!({"oid": f.sha256, "size": f.data.len(), "pointerSize": 134});
                            }
                            e
                        })
                        .collect(),
                )
            };
            return respond(&mut stream, 200, &[], body.to_string().as_bytes()).await;
        }
        let Some(f) = path.strip_prefix(&resolve).and_then(|p| repo.files.iter().find(|f| f.path == p)) else {
            return respond(&mut stream, 404, &[], b"not found").await;
        };
        if f.data.len() <= 1024 {
            return respond(&mut stream, 200, &[("x-repo-commit", COMMIT.to_owned())], &f.data).await;
        }
        let host = repo.files_host.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let headers = [
            ("x-repo-commit", COMMIT.to_owned()),
            ("x-linked-etag", format!("\"{}\"", f.sha256)),
            ("x-linked-size", f.data.len().to_string()),
            ("location", format!("http://{host}/blobs/{}", f.sha256)),
        ];
        return respond(&mut stream, 302, &headers, b"").await;
    }
    let Some(f) = path.strip_prefix("/blobs/").and_then(|sha| repo.files.iter().find(|f| f.sha256 == sha)) else {
        return respond(&mut stream, 404, &[], b"not found").await;
    };
    match range {
        Some(start) if start < f.data.len() => {
            let cr = format!("bytes {start}-{}/{}", f.data.len() - 1, f.data.len());
            respond(&mut stream, 206, &[("content-range", cr)], &f.data[start..]).await
        }
        _ => respond(&mut stream, 200, &[], &f.data).await,
    }
}

async fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}
