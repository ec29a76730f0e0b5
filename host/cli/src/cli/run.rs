//! `jobhost run FILE.wasm -- ARGS`: installs a component, runs it, streams its output
//! and exits with its exit code, the one command that needs no server running: when
//! none answers at `--server` it starts an embedded one on a temporary data dir and
//! stops it (and removes the dir) once the job has ended.

use super::conn::Conn;
use super::job_args::JobArgs;
use super::logs::stream_logs;
use super::output::{exit_code_of, print_job};
use super::transfer::{download_all, upload_dir};
use anyhow::Context as _;
use clap::Args;
use jobhost_client::Client;
use jobhost_model::JobStatus;
use jobhost_server::{self as server, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `jobhost run` options.
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    job: JobArgs,
    /// Send this directory as the job's `/input` (read-only).
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
    /// Write every artifact of the job into this directory once it ends (sub-paths
    /// kept, each checked against its size and SHA-256).
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Name to install it under [default: the file's stem].
    #[arg(long)]
    name: Option<String>,
    /// The .wasm file.
    component: PathBuf,
    /// Arguments (argv[1..]).
    #[arg(last = true)]
    args: Vec<String>,
}

/// Runs the component on the server at `--server`, or on an embedded one.
pub(super) async fn exec(args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.job.is_container(),
        "`jobhost run` runs a component; a container job is `jobhost submit --image IMAGE -- COMMAND`"
    );
    let digest = digest_of(&args.component).with_context(|| format!("reading {}", args.component.display()))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => plugin_name_from(&args.component),
    };
    // Use the server that answers at --server; otherwise bring one up in-process.
    let mut embedded = None;
    let mut client = args.conn.client()?;
    if client.health().await.is_err() {
        let dir = tempfile::tempdir().context("creating a temporary data dir")?;
        let mut config = ServerConfig::new(dir.path().to_path_buf());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        // Compiled components outlive the temporary data dir, so a second `run` of the
        // same component compiles nothing; a run needs no model puller.
        config.component_cache = Some(component_cache()?);
        config.prepare_puller = false;
        config.container_engine = false;
        let server = server::start(config).await?;
        client = Client::with_token(&server.url(), Some(&server.admin_token()?))?;
        embedded = Some((server, dir));
    }
    let result = run_on(&client, &name, &digest, &args).await;
    if let Some((server, dir)) = embedded {
        server.stop().await;
        drop(dir);
    }
    result
}

/// The `sha256:` digest of the file at `path`, read in pieces into one buffer: a large
/// component the server already holds is never read into memory whole (a fresh 20 MB
/// buffer costs more in page faults than hashing it).
fn digest_of(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(format!("sha256:{}", hex::encode(hasher.finalize()))),
            n => hasher.update(&buf[..n]),
        }
    }
}

async fn run_on(client: &Client, name: &str, digest: &str, args: &RunArgs) -> anyhow::Result<ExitCode> {
    // The bytes travel only when the server does not hold them already.
    match client.install_digest(name, digest).await {
        Ok(_) => {}
        Err(e) if e.kind() == Some("not_found") => {
            let wasm =
                std::fs::read(&args.component).with_context(|| format!("reading {}", args.component.display()))?;
            client.install(name, &wasm).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let mut request = args.job.request(name.to_owned(), args.args.clone())?;
    if let Some(dir) = &args.files {
        request.files_id = Some(upload_dir(client, dir).await?.id);
    }
    let submitted = client.submit(&request).await?;
    let id = submitted.job.id;
    stream_logs(client, &id, true, args.conn.json).await?;
    let job = client.get(&id).await?;
    if let Some(dir) = &args.artifacts {
        download_all(client, &id, dir).await?;
    }
    if args.conn.json {
        print_job(&job, true)?;
    } else if job.status != JobStatus::Completed {
        eprintln!("jobhost: job {} {}: {}", job.id, job.status, job.error.as_deref().unwrap_or(""));
    }
    Ok(exit_code_of(&job))
}

/// Where embedded servers keep compiled components: `$XDG_CACHE_HOME/jobhost/components`
/// (`~/.cache/jobhost/components` when it is not set).
fn component_cache() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?).join(".cache")
        }
    };
    Ok(base.join("jobhost").join("components"))
}

/// A plugin name from a file name: its stem, lowercased, other characters as `-`.
fn plugin_name_from(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("component");
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c.to_ascii_lowercase() } else { '-' })
        .collect();
    name.trim_start_matches(['-', '.', '_']).chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_come_from_file_stems() {
        assert_eq!(plugin_name_from(std::path::Path::new("/x/Hello World.wasm")), "hello-world");
        assert_eq!(plugin_name_from(std::path::Path::new("probe.wasm")), "probe");
    }
}
