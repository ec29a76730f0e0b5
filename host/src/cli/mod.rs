//! The `jobhost` command: `serve` runs a server; every other subcommand is a client
//! of one (through [`crate::client`]), and `run` starts an embedded server on a
//! temporary data dir when none answers.

mod bench;
mod progress;

use crate::auth;
use crate::client::Client;
use crate::jobs::SubmitRequest;
use crate::jobs::model::{Job, JobStatus, LogChunk, LogStream};
use crate::server::{self, ServerConfig};
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use progress::ProgressView;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod bench_pull;
mod pull;

/// Default address of the server, for `serve` and for clients.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7717";

/// Runs jobs as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "jobhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the JSON-RPC API and run jobs.
    Serve(ServeArgs),
    /// Install a component, run it, stream its output and exit with its exit code.
    Run(RunArgs),
    /// Install a component under a name.
    Install {
        #[command(flatten)]
        conn: Conn,
        /// Name jobs will use.
        name: String,
        /// The .wasm file.
        file: PathBuf,
    },
    /// Submit a job of an installed component and print it.
    Submit {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        job: JobArgs,
        /// Installed component name.
        plugin: String,
        /// Arguments (argv[1..]).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// List jobs, newest first.
    Jobs {
        #[command(flatten)]
        conn: Conn,
        /// Only jobs with this status.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one job.
    Get {
        #[command(flatten)]
        conn: Conn,
        /// Job id.
        id: String,
    },
    /// Print a job's output; `-f` follows it until the job ends.
    Logs {
        #[command(flatten)]
        conn: Conn,
        /// Keep printing new output until the job ends.
        #[arg(short, long)]
        follow: bool,
        /// Job id.
        id: String,
    },
    /// Wait for a job to end and print it; exits with its exit code.
    Wait {
        #[command(flatten)]
        conn: Conn,
        /// Job id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600.0)]
        timeout_s: f64,
    },
    /// Measure throughput, latency, memory and start-up on a temporary server.
    Bench(bench::BenchArgs),
    /// Cancel a job.
    Cancel {
        #[command(flatten)]
        conn: Conn,
        /// Job id.
        id: String,
    },
    /// Sweep now: expire stale uploads, clean jobs past the retention, prune their logs.
    Gc {
        #[command(flatten)]
        conn: Conn,
    },
    /// Serve MCP (Model Context Protocol) on stdin/stdout for agents, driving a server.
    Mcp {
        /// Server URL.
        #[arg(long, env = "JOBHOST_URL", default_value = "http://127.0.0.1:7717")]
        server: String,
        /// File holding the API token [default: the data dir's `token`, if present].
        #[arg(long, env = "JOBHOST_TOKEN_FILE")]
        token_file: Option<PathBuf>,
    },
    /// Pull a model from the hub into the server's cache, showing progress.
    Pull(pull::PullArgs),
    /// Benchmark a model pull from a local hub against curl of the same files.
    BenchPull(bench_pull::BenchPullArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN, env = "JOBHOST_LISTEN")]
    listen: SocketAddr,
    /// Data directory [default: $XDG_DATA_HOME/jobhost].
    #[arg(long, env = "JOBHOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Most jobs running at once [default: 4 per core, as many as the cores hold at the
    /// default `cpus` of 0.25].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Allow listening on an address other than loopback (other machines can connect).
    #[arg(long)]
    allow_remote: bool,
    /// Days an ended job is kept before its files and logs are removed.
    #[arg(long, default_value_t = 30)]
    retention_days: u32,
    /// Largest request body, bytes [default: 64 MiB].
    #[arg(long)]
    max_request_bytes: Option<u32>,
    /// Most calls in one JSON-RPC batch [default: 1000].
    #[arg(long)]
    max_batch: Option<u32>,
    /// Most connections at once [default: 1024].
    #[arg(long)]
    max_connections: Option<u32>,
    /// Calls per second each token may make, sustained [default: 5000].
    #[arg(long)]
    rate_per_s: Option<u32>,
    /// Calls a token may make in a burst [default: 50000].
    #[arg(long)]
    rate_burst: Option<u32>,
}

impl Conn {
    /// A client of `--server` with the token from `--token`, `JOBHOST_TOKEN`,
    /// `--token-file` or the default data dir's `token` file, in that order.
    fn client(&self) -> anyhow::Result<Client> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some(f)) => {
                Some(auth::read_token_file(f).with_context(|| format!("reading the token file {}", f.display()))?)
            }
            (None, None) => default_data_dir().ok().and_then(|d| auth::read_token_file(&d.join(auth::TOKEN_FILE)).ok()),
        };
        Ok(Client::with_token(&self.server, token.as_deref())?)
    }
}

#[derive(Debug, Args)]
struct Conn {
    /// Server URL.
    #[arg(long, env = "JOBHOST_URL", default_value = "http://127.0.0.1:7717")]
    server: String,
    /// API token [default: read from --token-file].
    #[arg(long, env = "JOBHOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token [default: the data dir's `token`].
    #[arg(long, env = "JOBHOST_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JobArgs {
    /// Environment variable for the job (repeatable), `KEY=VALUE`.
    #[arg(long = "env", short = 'e', value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// JSON input for plugins.
    #[arg(long)]
    input: Option<String>,
    /// Wall-clock limit, seconds.
    #[arg(long)]
    timeout_s: Option<u32>,
    /// Memory limit, MiB.
    #[arg(long)]
    memory_mb: Option<u32>,
    /// CPUs the job needs, in steps of 0.001 [default: the server's, 0.25].
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<crate::jobs::model::Cpus>,
    /// Idempotency key.
    #[arg(long)]
    client_job_id: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    job: JobArgs,
    /// Name to install it under [default: the file's stem].
    #[arg(long)]
    name: Option<String>,
    /// The .wasm file.
    component: PathBuf,
    /// Arguments (argv[1..]).
    #[arg(last = true)]
    args: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobhost: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jobhost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Run(args) => run(args).await,
        Command::Bench(args) => bench::bench(args).await,
        Command::Install { conn, name, file } => {
            let client = conn.client()?;
            let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let plugin = client.install(&name, &wasm).await?;
            if conn.json {
                println!("{}", serde_json::to_string(&plugin)?);
            } else {
                println!("installed {} ({}, {})", plugin.name, plugin.kind.as_str(), plugin.digest);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit { conn, job, plugin, args } => {
            let client = conn.client()?;
            let submitted = client.submit(&job.request(plugin, args)?).await?;
            if conn.json {
                println!("{}", serde_json::to_string(&submitted)?);
            } else {
                println!("{}", submitted.job.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { conn, status, limit } => {
            let client = conn.client()?;
            let status = match status {
                Some(s) => Some(JobStatus::parse(&s).with_context(|| format!("unknown status {s:?}"))?),
                None => None,
            };
            let page = client.list(status, None, Some(limit)).await?;
            if conn.json {
                println!("{}", serde_json::to_string(&page)?);
            } else {
                for j in &page.jobs {
                    println!("{}  {:<10} {:<16} {}", j.id, j.status.as_str(), j.plugin, j.created_at);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { conn, id } => {
            let job = conn.client()?.get(&id).await?;
            print_job(&job, conn.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { conn, follow, id } => {
            let client = conn.client()?;
            stream_logs(&client, &id, follow, conn.json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Wait { conn, id, timeout_s } => {
            let client = conn.client()?;
            let job = wait_showing_progress(&client, &id, Duration::from_secs_f64(timeout_s), conn.json).await?;
            print_job(&job, conn.json)?;
            Ok(exit_code_of(&job))
        }
        Command::Gc { conn } => {
            let report = conn.client()?.gc().await?;
            if conn.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "removed {} expired uploads, cleaned {} jobs past retention, pruned {} log chunks",
                    report.uploads_expired, report.jobs_cleaned, report.log_chunks_pruned
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { conn, id } => {
            let job = conn.client()?.cancel(&id).await?;
            print_job(&job, conn.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mcp { server, token_file } => {
            // stdout carries the protocol; problems go to stderr, which MCP clients keep.
            init_logging("warn");
            let token = read_token(token_file)?;
            crate::mcp::serve_stdio(connect(&server, token)?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pull(args) => pull::pull(args).await,
        Command::BenchPull(args) => bench_pull::bench_pull(args).await,
    }
}

/// The API token: from `path` (which must exist when given), else from the default
/// data dir's `token` file when there is one.
fn read_token(path: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let (path, required) = match path {
        Some(p) => (p, true),
        None => match default_data_dir() {
            Ok(d) => (d.join(auth::TOKEN_FILE), false),
            Err(_) => return Ok(None),
        },
    };
    match auth::read_token_file(&path) {
        Ok(t) => Ok(Some(t).filter(|t| !t.is_empty())),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading the token file {}: {e}", path.display())),
    }
}

/// The one place a client of `server` is built with the caller's token.
fn connect(server: &str, token: Option<String>) -> anyhow::Result<Client> {
    Ok(Client::with_token(server, token.as_deref())?)
}

impl JobArgs {
    fn request(&self, plugin: String, args: Vec<String>) -> anyhow::Result<SubmitRequest> {
        let input = match &self.input {
            Some(text) => Some(serde_json::from_str(text).context("--input is not valid JSON")?),
            None => None,
        };
        Ok(SubmitRequest {
            plugin,
            args,
            env: self.env.iter().cloned().collect::<BTreeMap<_, _>>(),
            input,
            timeout_s: self.timeout_s,
            memory_mb: self.memory_mb,
            cpus: self.cpus,
            client_job_id: self.client_job_id.clone(),
            ..SubmitRequest::default()
        })
    }
}

fn parse_cpus(text: &str) -> Result<crate::jobs::model::Cpus, String> {
    text.parse::<f64>()
        .ok()
        .and_then(crate::jobs::model::Cpus::from_cpus)
        .filter(|cpus| cpus.millis() > 0)
        .ok_or_else(|| format!("{text:?} is not a number of CPUs: more than 0, in steps of 0.001"))
}

/// `$XDG_DATA_HOME/jobhost`, falling back to `~/.local/share/jobhost` as the XDG
/// specification says.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("jobhost"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither XDG_DATA_HOME nor HOME is set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/jobhost"))
}

/// Logs to stderr, filtered by `JOBHOST_LOG` (else `default`).
fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOBHOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging("info");
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let mut config = ServerConfig::new(data_dir);
    config.listen = args.listen;
    config.allow_remote = args.allow_remote;
    if args.retention_days == 0 {
        bail!("--retention-days must be at least 1");
    }
    config.retention = Duration::from_secs(u64::from(args.retention_days) * 24 * 3600);
    let t = &mut config.transport;
    for (value, slot, name) in [
        (args.max_request_bytes, &mut t.max_body_bytes, "--max-request-bytes"),
        (args.max_batch, &mut t.max_batch, "--max-batch"),
        (args.max_connections, &mut t.max_connections, "--max-connections"),
        (args.rate_per_s, &mut t.rate_per_s, "--rate-per-s"),
        (args.rate_burst, &mut t.rate_burst, "--rate-burst"),
    ] {
        match value {
            Some(0) => bail!("{name} must be at least 1"),
            Some(v) => *slot = v,
            None => {}
        }
    }
    config.hub = crate::models::HubConfig::from_vars(|k| std::env::var(k).ok());
    if let Some(n) = args.concurrency {
        if n == 0 {
            bail!("--concurrency must be at least 1");
        }
        config.concurrency = n;
    }
    let server = server::start(config).await?;
    eprintln!("jobhost {} listening on {}", crate::VERSION, server.url());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = server.stopped() => {}
    }
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(&args.component).with_context(|| format!("reading {}", args.component.display()))?;
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
        let server = server::start(config).await?;
        client = Client::with_token(&server.url(), Some(&server.admin_token()?))?;
        embedded = Some((server, dir));
    }
    let result = run_on(&client, &name, &wasm, &args).await;
    if let Some((server, dir)) = embedded {
        server.stop().await;
        drop(dir);
    }
    result
}

async fn run_on(client: &Client, name: &str, wasm: &[u8], args: &RunArgs) -> anyhow::Result<ExitCode> {
    client.install(name, wasm).await?;
    let submitted = client.submit(&args.job.request(name.to_owned(), args.args.clone())?).await?;
    let id = submitted.job.id;
    stream_logs(client, &id, true, args.conn.json).await?;
    let job = client.get(&id).await?;
    if args.conn.json {
        print_job(&job, true)?;
    } else if job.status != JobStatus::Completed {
        eprintln!("jobhost: job {} {}: {}", job.id, job.status, job.error.as_deref().unwrap_or(""));
    }
    Ok(exit_code_of(&job))
}

/// A plugin name from a file name: its stem, lowercased, other characters as `-`.
fn plugin_name_from(path: &std::path::Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("component");
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c.to_ascii_lowercase() } else { '-' })
        .collect();
    name.trim_start_matches(['-', '.', '_']).chars().take(64).collect()
}

/// How often a command showing a progress bar looks at the job's progress.
const PROGRESS_LOOK: Duration = Duration::from_millis(250);

/// Prints a job's output from the start; with `follow`, until the job ends, with a
/// progress bar on a terminal while it reports progress.
async fn stream_logs(client: &Client, id: &str, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut view = ProgressView::for_terminal(json);
    let mut looked: Option<Instant> = None;
    let mut next = 0;
    loop {
        let page = client.logs(id, next, None).await?;
        next = page.next_seq;
        for chunk in &page.chunks {
            view.suspend(|| print_chunk(chunk, json))?;
        }
        if page.eof || (!follow && page.chunks.is_empty()) {
            view.finish();
            return Ok(());
        }
        if follow && view.is_on() && looked.is_none_or(|t| t.elapsed() >= PROGRESS_LOOK) {
            view.update(&client.get(id).await?);
            looked = Some(Instant::now());
        }
        if page.chunks.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `jobs.wait` up to `timeout`; on a terminal (not `--json`), in short steps that
/// draw the job's progress.
async fn wait_showing_progress(client: &Client, id: &str, timeout: Duration, json: bool) -> anyhow::Result<Job> {
    let mut view = ProgressView::for_terminal(json);
    if !view.is_on() {
        return Ok(client.wait(id, timeout).await?);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let step = deadline.saturating_duration_since(Instant::now()).min(PROGRESS_LOOK);
        let job = client.wait(id, step).await?;
        if job.status.is_terminal() || Instant::now() >= deadline {
            view.finish();
            return Ok(job);
        }
        view.update(&job);
    }
}

fn print_chunk(chunk: &LogChunk, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(chunk)?);
        return Ok(());
    }
    match chunk.stream {
        LogStream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(chunk.data.as_bytes())?;
            out.flush()?;
        }
        LogStream::Stderr | LogStream::Log | LogStream::System => {
            let mut err = std::io::stderr().lock();
            err.write_all(chunk.data.as_bytes())?;
            err.flush()?;
        }
    }
    Ok(())
}

fn print_job(job: &Job, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(job)?);
    } else {
        println!("{}  {}  {}", job.id, job.status, job.plugin);
        if let Some(code) = job.exit_code {
            println!("exit code: {code}");
        }
        if let Some(e) = &job.error {
            println!("error: {e}");
        }
    }
    Ok(())
}

/// The process exit code for a job: its own exit code when it has one, 124 for a
/// timeout and 130 for a cancel (as shells report them), 1 for other failures, 75
/// (EX_TEMPFAIL) when it has not ended.
fn exit_code_of(job: &Job) -> ExitCode {
    match job.status {
        JobStatus::Completed => ExitCode::SUCCESS,
        JobStatus::TimedOut => ExitCode::from(124),
        JobStatus::Cancelled => ExitCode::from(130),
        JobStatus::Failed => match job.exit_code {
            Some(c) if (1..=255).contains(&c) => ExitCode::from(c as u8),
            _ => ExitCode::FAILURE,
        },
        _ if !job.status.is_terminal() => ExitCode::from(75),
        _ => ExitCode::SUCCESS,
    }
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
