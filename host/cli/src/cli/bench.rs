//! `jobhost bench`: throughput, latency, memory and start-up of a server run in this
//! process on a fresh temporary data dir, against a native process-spawn baseline.
//!
//! Everything goes through the public JSON-RPC API (HTTP for single calls, batches
//! pipelined over one WebSocket for the throughput run) with the production store
//! settings (WAL, `synchronous=FULL`): a submit counts only once its commit is on disk.
//! The jobs are no-op WASI command components assembled here from WAT, so an
//! installed binary can run the bench without any file of the repository.
//!
//! The figures (see `BENCHMARKS.md`):
//! - `throughput_jobs_per_s`: `--jobs` no-op jobs submitted in batches until every one
//!   is `completed`;
//! - `latency_p50_ms` / `latency_p99_ms`: submit → `completed` of one job at a time;
//! - `process_spawn_per_s`: the same nothing done by a native process per task
//!   (`/bin/true`, fork/exec, one spawner per core), and `vs_process_spawn`, the ratio;
//! - `idle_rss_mb`: this process with a started, idle server;
//! - `rss_1000_concurrent_mb`: this process with `--concurrent` sleeping jobs running
//!   at once (concurrency and capacity raised for that case);
//! - `cold_start_ms` / `warm_start_ms`: server start → first job completed, with the
//!   precompiled component cache emptied and with it warm;
//! - `guest_throughput_jobs_per_s`, with `--guest WASM`: the throughput run again with
//!   that component (a real guest, built with `std`, pays for what the hand-written
//!   no-op skips: its memory, its data segments, its start-up code and WASI calls).

use super::bench_baselines::{SLEEP_NS, SLEEP_WAT, concurrent_rss, rss_mb, spawn_rate};
use anyhow::{Context as _, bail, ensure};
use clap::Args;
use futures::StreamExt as _;
use jobhost_client::{Client, Events};
use jobhost_model::JobStatus;
use jobhost_model::SubmitRequest;
use jobhost_server::{self as server, RunningServer, ServerConfig};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A WASI 0.2 command that does nothing: `wasi:cli/run.run` returns `ok`. No imports,
/// no memory: what is measured is the host's work per job, not the guest's.
const NOOP_WAT: &str = r#"
(component
  (core module $m
    (func (export "run") (result i32) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $cli-run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli-run)))
"#;

/// Longest any one phase may take before the bench gives up (a stuck server must not
/// hang it).
pub(super) const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the throughput run asks whether every job has ended.
const POLL: Duration = Duration::from_millis(5);

/// `jobhost bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// No-op jobs in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub(super) jobs: usize,
    /// Jobs run one at a time for the latency percentiles.
    #[arg(long, default_value_t = 1_000)]
    pub(super) latency_jobs: usize,
    /// Native processes spawned for the baseline.
    #[arg(long, default_value_t = 4_000)]
    spawns: usize,
    /// Sleeping jobs held at once for the memory figure.
    #[arg(long, default_value_t = 1_000)]
    concurrent: usize,
    /// Submits per JSON-RPC batch (at most 1,000, the server's limit).
    #[arg(long, default_value_t = 500)]
    pub(super) batch: usize,
    /// Batches in flight at once on the WebSocket.
    #[arg(long, default_value_t = 4)]
    pub(super) pipeline: usize,
    /// Most jobs running at once in the throughput and latency runs, the CPU capacity
    /// raised to hold that many default jobs if needed [default: the server's, 4 per
    /// core].
    #[arg(long)]
    pub(super) concurrency: Option<usize>,
    /// A WASI command component to run the throughput once more with, such as the
    /// repository's `std` probe (`cargo build -p probe --target wasm32-wasip2
    /// --release`, then `--guest target/wasm32-wasip2/release/probe.wasm --guest-arg noop`).
    #[arg(long, value_name = "WASM")]
    guest: Option<PathBuf>,
    /// An argument of every `--guest` job (repeat for several).
    #[arg(long = "guest-arg", value_name = "ARG", allow_hyphen_values = true, requires = "guest")]
    guest_args: Vec<String>,
    /// Print one JSON object with every figure as the last line.
    #[arg(long)]
    pub(super) json: bool,
    /// A PostgreSQL database to measure several nodes on (a schema of its own is made
    /// there for the run and dropped after it): throughput and latency across
    /// `--nodes` servers sharing it, beside one server on SQLite in the same run.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Nodes on the `--database-url` database.
    #[arg(long, default_value_t = 2, requires = "database_url")]
    nodes: usize,
    /// A container image on this machine: measure a trivial container job (`true` in
    /// it) against `docker run --rm` of the same, instead of the Wasm figures.
    #[arg(long, value_name = "IMAGE", conflicts_with = "database_url")]
    container: Option<String>,
    /// Container jobs (and `docker run`s) measured with `--container`.
    #[arg(long, default_value_t = 20, requires = "container")]
    container_runs: usize,
    /// Measure one run of a one-step workflow fanning out into this many no-op tasks,
    /// start → success, instead of the job figures.
    #[arg(long, value_name = "N", conflicts_with_all = ["database_url", "container"])]
    workflow_tasks: Option<u32>,
    /// Measure the throughput with job traces exported over OTLP (to a receiver in this
    /// process) against without, alternating, `--rounds` runs each, instead of the job
    /// figures.
    #[arg(long, conflicts_with_all = ["database_url", "container", "workflow_tasks"])]
    traces: bool,
    /// Runs of each kind with `--traces` (more of them steady the median on a noisy
    /// machine).
    #[arg(long, default_value_t = 3, requires = "traces", value_parser = clap::value_parser!(u32).range(1..=99))]
    pub(super) rounds: u32,
    /// Measure sending one tar archive of this many small files into an upload (checked,
    /// unpacked, on disk), instead of the job figures.
    #[arg(long, value_name = "N", conflicts_with_all = ["database_url", "container", "workflow_tasks", "traces"])]
    unpack_files: Option<u64>,
    /// Measure the memory of a `jobhost serve` process holding this many subscriptions
    /// on each of `--sockets` WebSockets, before, while open and once closed, instead of
    /// the job figures.
    #[arg(long, value_name = "N", conflicts_with_all = ["database_url", "container", "workflow_tasks", "traces", "unpack_files"])]
    subscriptions: Option<u32>,
    /// WebSockets held open with `--subscriptions`.
    #[arg(long, default_value_t = 100, requires = "subscriptions")]
    pub(super) sockets: u32,
}

/// The figures, under the names `BENCHMARKS.md` and the `--json` line use.
#[derive(Debug, Serialize)]
struct Report {
    throughput_jobs_per_s: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    process_spawn_per_s: f64,
    vs_process_spawn: f64,
    idle_rss_mb: f64,
    rss_1000_concurrent_mb: f64,
    cold_start_ms: f64,
    warm_start_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_throughput_jobs_per_s: Option<f64>,
}

/// Runs the bench and prints its report.
pub async fn exec(args: BenchArgs) -> anyhow::Result<ExitCode> {
    ensure!(args.jobs > 0, "--jobs must be at least 1");
    ensure!(args.latency_jobs > 0, "--latency-jobs must be at least 1");
    ensure!(args.spawns > 0, "--spawns must be at least 1");
    ensure!(args.concurrent > 0, "--concurrent must be at least 1");
    ensure!((1..=1000).contains(&args.batch), "--batch must be between 1 and 1000");
    ensure!(args.pipeline > 0, "--pipeline must be at least 1");
    ensure!(args.concurrency != Some(0), "--concurrency must be at least 1");
    let noop = wat::parse_str(NOOP_WAT).context("assembling the no-op component")?;
    if let Some(tasks) = args.workflow_tasks {
        return super::bench_workflow::exec(&args, tasks, &noop).await;
    }
    if let Some(files) = args.unpack_files {
        return super::bench_unpack::exec(&args, files).await;
    }
    if let Some(per_socket) = args.subscriptions {
        return super::bench_subscriptions::exec(&args, per_socket).await;
    }
    if args.traces {
        return super::bench_traces::exec(&args, &noop).await;
    }
    if let Some(image) = &args.container {
        return super::bench_containers::exec(&args, image, args.container_runs).await;
    }
    if let Some(url) = &args.database_url {
        ensure!(args.nodes > 0, "--nodes must be at least 1");
        return super::bench_nodes::exec(&args, url, args.nodes, &noop).await;
    }
    let sleeper = wat::parse_str(SLEEP_WAT.replace("SLEEP_NS", &SLEEP_NS.to_string()))
        .context("assembling the sleeping component")?;
    let guest = match &args.guest {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    let tmp = tempfile::tempdir().context("creating a temporary data dir")?;
    let data = tmp.path().join("data");
    let began = Instant::now();
    let say = |what: &str| {
        if !args.json {
            eprintln!("bench: {:>6.1} s  {what}", began.elapsed().as_secs_f64());
        }
    };
    let tweak = |c: &mut ServerConfig| concurrency(c, &args);

    // First start: install the no-op, run one job, then measure the idle process.
    say("installing the no-op component");
    let first = start(&data, tweak).await?;
    let client = client_of(&first)?;
    client.install("noop", &noop).await?;
    run_one(&client).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss_mb = rss_mb()?;
    first.stop().await;

    say("cold and warm start");
    clear_precompiled(&data)?;
    let (cold, cold_start_ms) = timed_start(&data, tweak).await?;
    cold.stop().await;
    let (server, warm_start_ms) = timed_start(&data, tweak).await?;

    say("latency, one job at a time");
    let events = client_of(&server)?.websocket().await?;
    let latencies = latency(&events, args.latency_jobs).await?;

    say(&format!("throughput, {} jobs", args.jobs));
    let throughput_jobs_per_s = throughput(&[&server], &events, &args, &noop_request()).await?;
    let guest_throughput_jobs_per_s = match &guest {
        Some(wasm) => {
            say(&format!("throughput of the guest, {} jobs", args.jobs));
            client_of(&server)?.install("guest", wasm).await?;
            let req =
                SubmitRequest { plugin: "guest".into(), args: args.guest_args.clone(), ..SubmitRequest::default() };
            run_one_of(&client_of(&server)?, &req).await.context("the guest's first job")?;
            Some(throughput(&[&server], &events, &args, &req).await?)
        }
        None => None,
    };
    drop(events);
    server.stop().await;

    say("process-spawn baseline");
    let process_spawn_per_s = spawn_rate(args.spawns).await?;

    say(&format!("memory with {} sleeping jobs", args.concurrent));
    let rss_1000_concurrent_mb = concurrent_rss(&tmp.path().join("concurrent"), &sleeper, args.concurrent).await?;
    say("done");

    let report = Report {
        throughput_jobs_per_s,
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p99_ms: percentile(&latencies, 99.0),
        process_spawn_per_s,
        vs_process_spawn: throughput_jobs_per_s / process_spawn_per_s,
        idle_rss_mb,
        rss_1000_concurrent_mb,
        cold_start_ms,
        warm_start_ms,
        guest_throughput_jobs_per_s,
    };
    print_table(&report, &args);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--concurrency`, with the CPU capacity raised to hold that many default jobs.
pub(super) fn concurrency(c: &mut ServerConfig, args: &BenchArgs) {
    if let Some(n) = args.concurrency {
        c.concurrency = n;
        let held = (n as u64).saturating_mul(u64::from(c.limits.default_cpus.millis())).div_ceil(1000);
        c.limits.capacity_cpus = c.limits.capacity_cpus.max(u32::try_from(held).unwrap_or(u32::MAX));
    }
}

/// A server on `data`, listening on a free loopback port.
pub(super) async fn start(data: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<RunningServer> {
    let mut config = ServerConfig::new(data.to_path_buf());
    // The figures are of jobs: no model puller compiling beside them at start.
    config.prepare_puller = false;
    config.container_engine = false;
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    tweak(&mut config);
    server::start(config).await
}

/// Starts a server and runs one job on it: the time from the start to that job's
/// completion, ms.
async fn timed_start(data: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<(RunningServer, f64)> {
    let t0 = Instant::now();
    let server = start(data, tweak).await?;
    run_one(&client_of(&server)?).await?;
    Ok((server, ms(t0.elapsed())))
}

/// A client of `server` that presents its first admin's token.
pub(super) fn client_of(server: &RunningServer) -> anyhow::Result<Client> {
    let token = server.admin_token().context("reading the server's admin token")?;
    Ok(Client::with_token(&server.url(), Some(&token))?)
}

/// Submits one no-op job and waits for it to complete.
pub(super) async fn run_one(client: &Client) -> anyhow::Result<()> {
    run_one_of(client, &noop_request()).await
}

/// Submits `req` and waits for its job to complete.
async fn run_one_of(client: &Client, req: &SubmitRequest) -> anyhow::Result<()> {
    let job = client.submit(req).await?.job;
    let done = client.wait(&job.id, PHASE_TIMEOUT).await?;
    ensure!(done.status == JobStatus::Completed, "job {} ended {}: {:?}", done.id, done.status, done.error);
    Ok(())
}

pub(super) fn noop_request() -> SubmitRequest {
    SubmitRequest { plugin: "noop".into(), ..SubmitRequest::default() }
}

/// Removes every precompiled component, so the next start compiles from the wasm.
fn clear_precompiled(data: &Path) -> anyhow::Result<()> {
    let cache = data.join("plugins").join("cache");
    let entries = std::fs::read_dir(&cache).with_context(|| format!("listing {}", cache.display()))?;
    let mut removed = 0;
    for entry in entries {
        let path: PathBuf = entry?.path();
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        removed += 1;
    }
    ensure!(removed > 0, "no precompiled component in {}", cache.display());
    Ok(())
}

/// Submit → completed of `n` jobs, one after the other, over one WebSocket; ms each.
pub(super) async fn latency(events: &Events, n: usize) -> anyhow::Result<Vec<f64>> {
    let params = jobhost_client::submit_params(&noop_request())?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let submitted: jobhost_model::Submitted = events.call("jobs.submit", params.clone()).await?;
        let mut wait = serde_json::Map::new();
        wait.insert("id".into(), submitted.job.id.clone().into());
        wait.insert("timeout_s".into(), PHASE_TIMEOUT.as_secs().into());
        let job: jobhost_model::Job = events.call("jobs.wait", wait).await?;
        samples.push(ms(t0.elapsed()));
        ensure!(job.status == JobStatus::Completed, "job {} ended {}: {:?}", job.id, job.status, job.error);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// Submits `args.jobs` jobs of `req` in pipelined batches through `nodes[0]` and waits
/// until none is pending or running on any of `nodes`; jobs per second from the first
/// submit to the last completion.
pub(super) async fn throughput(
    nodes: &[&RunningServer],
    events: &Events,
    args: &BenchArgs,
    req: &SubmitRequest,
) -> anyhow::Result<f64> {
    let client = client_of(nodes.first().context("no node to submit to")?)?;
    let all: Vec<Client> = nodes.iter().map(|n| client_of(n)).collect::<anyhow::Result<_>>()?;
    let before = count(&client, JobStatus::Completed).await?;
    let batch = vec![req.clone(); args.batch];
    let sizes: Vec<usize> = (0..args.jobs).step_by(args.batch).map(|start| args.batch.min(args.jobs - start)).collect();
    let t0 = Instant::now();
    let mut submits = futures::stream::iter(sizes)
        .map(|size| {
            let batch = &batch[..size];
            async move { events.submit_batch(batch).await }
        })
        .buffer_unordered(args.pipeline);
    let mut submitted = 0usize;
    while let Some(answers) = submits.next().await {
        for a in answers? {
            a.context("a submit in a batch failed")?;
            submitted += 1;
        }
    }
    drop(submits);
    ensure!(submitted == args.jobs, "{submitted} of {} submits answered", args.jobs);
    let deadline = t0 + PHASE_TIMEOUT;
    loop {
        // The queue first, then the runs: a job only moves forward (pending, starting,
        // running, ended), so one not pending before the runs were counted and not
        // among them has ended. (The other order misses a job claimed in between.)
        let pending = !client.list(Some(JobStatus::Pending), None, Some(1)).await?.jobs.is_empty();
        let mut running = 0;
        for node in &all {
            running += node.usage().await?.running_jobs;
        }
        if !pending && running == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the throughput run did not finish within {} s", PHASE_TIMEOUT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
    let elapsed = t0.elapsed();
    let completed = count(&client, JobStatus::Completed).await? - before;
    ensure!(completed == args.jobs, "{completed} of {} jobs completed", args.jobs);
    Ok(args.jobs as f64 / elapsed.as_secs_f64())
}

/// How many jobs have `status`, page by page.
pub(super) async fn count(client: &Client, status: JobStatus) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut cursor = None;
    loop {
        let page = client.list(Some(status), cursor.as_deref(), Some(jobhost_model::MAX_PAGE)).await?;
        n += page.jobs.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(n),
        }
    }
}

/// The `p`th percentile of sorted `samples` (nearest rank).
pub(super) fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_table(r: &Report, args: &BenchArgs) {
    let rows = [
        (format!("throughput ({} no-op jobs)", args.jobs), format!("{:.0} jobs/s", r.throughput_jobs_per_s)),
        (format!("latency p50 ({} jobs, one at a time)", args.latency_jobs), format!("{:.2} ms", r.latency_p50_ms)),
        ("latency p99".into(), format!("{:.2} ms", r.latency_p99_ms)),
        ("process spawn (/bin/true)".into(), format!("{:.0} /s", r.process_spawn_per_s)),
        ("jobs vs process spawn".into(), format!("{:.2}x", r.vs_process_spawn)),
        ("idle RSS".into(), format!("{:.1} MB", r.idle_rss_mb)),
        (format!("RSS, {} sleeping jobs", args.concurrent), format!("{:.1} MB", r.rss_1000_concurrent_mb)),
        ("cold start to first job".into(), format!("{:.1} ms", r.cold_start_ms)),
        ("warm start to first job".into(), format!("{:.1} ms", r.warm_start_ms)),
    ];
    let guest = r.guest_throughput_jobs_per_s.map(|t| {
        let name = args
            .guest
            .as_deref()
            .and_then(Path::file_name)
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        (format!("throughput ({} jobs of {name})", args.jobs), format!("{t:.0} jobs/s"))
    });
    let rows: Vec<_> = rows.into_iter().chain(guest).collect();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v:>14}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_assemble() {
        assert!(wat::parse_str(NOOP_WAT).is_ok());
        assert!(wat::parse_str(SLEEP_WAT.replace("SLEEP_NS", "1")).is_ok());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 50.0);
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }
}
