//! The `jobhost` command: `serve` runs a server; every other subcommand is a client
//! of one (through [`jobhost_client`]), and `run` starts an embedded server on a
//! temporary data dir when none answers.
//!
//! Layout: one command per file, each holding its command's clap `Args` struct and the
//! `exec` that carries it out; `Command` here names them all, so `dispatch` is one
//! line per command. What several commands share sits in its own file: `conn` (the
//! server, the token and `--json` every client command takes), `job_args` (the job
//! options of `submit` and `run`), `output` (how a job and its output are printed, and
//! the exit code a job's end maps to) and `progress` (the progress bar on a terminal).

mod artifacts;
mod bench;
mod bench_baselines;
mod bench_containers;
mod bench_nodes;
mod bench_pull;
mod bench_subscriptions;
pub(crate) mod bench_traces;
mod bench_unpack;
mod bench_workflow;
mod cancel;
mod conn;
mod gc;
mod get;
mod install;
mod job_args;
mod jobs;
mod logs;
mod mcp;
mod output;
mod progress;
mod pull;
mod run;
mod runs;
mod serve;
mod submit;
mod transfer;
mod upload;
mod wait;
mod workers;
mod workflow;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Default address of the server, for `serve` and for clients.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7717";

/// Runs jobs as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "jobhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, in the order `--help` lists them; each variant's doc is its help.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the JSON-RPC API and run jobs.
    Serve(serve::ServeArgs),
    /// Install a component, run it, stream its output and exit with its exit code.
    Run(run::RunArgs),
    /// Install a component under a name.
    Install(install::InstallArgs),
    /// Submit a job of an installed component and print it.
    Submit(submit::SubmitArgs),
    /// List jobs, newest first.
    Jobs(jobs::JobsArgs),
    /// Show one job.
    Get(get::GetArgs),
    /// Print a job's output; `-f` follows it until the job ends.
    Logs(logs::LogsArgs),
    /// Wait for a job to end and print it; exits with its exit code.
    Wait(wait::WaitArgs),
    /// Measure throughput, latency, memory and start-up on a temporary server.
    Bench(bench::BenchArgs),
    /// Cancel a job.
    Cancel(cancel::CancelArgs),
    /// Send a directory as an upload and print its id (for `submit --files-id`).
    Upload(upload::UploadArgs),
    /// List a job's artifacts, or download one (`--get`) or all (`--all -o DIR`).
    Artifacts(artifacts::ArtifactsArgs),
    /// Sweep now: expire stale uploads, clean jobs past the retention, prune their logs.
    Gc(gc::GcArgs),
    /// Serve MCP (Model Context Protocol) on stdin/stdout for agents, driving a server.
    Mcp(mcp::McpArgs),
    /// Pull a model from the hub into the server's cache, showing progress.
    Pull(pull::PullArgs),
    /// Benchmark a model pull from a local hub against curl of the same files.
    BenchPull(bench_pull::BenchPullArgs),
    /// List the nodes on the server's database, with their status and capacity.
    Workers(workers::WorkersArgs),
    /// Drain a node: it takes no new job and stops once its running jobs end.
    Drain(workers::DrainArgs),
    /// Create, update, list, show or delete workflows (DAGs of steps).
    Workflow(workflow::WorkflowArgs),
    /// Start a run of a workflow (`-p key=value` parameters; `--wait` follows it).
    RunWorkflow(runs::RunWorkflowArgs),
    /// List workflow runs, newest first.
    Runs(runs::RunsArgs),
    /// Show a run step by step (`--watch` follows it to its end).
    RunStatus(runs::RunStatusArgs),
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
        Command::Serve(args) => serve::exec(args).await,
        Command::Run(args) => run::exec(args).await,
        Command::Install(args) => install::exec(args).await,
        Command::Submit(args) => submit::exec(args).await,
        Command::Jobs(args) => jobs::exec(args).await,
        Command::Get(args) => get::exec(args).await,
        Command::Logs(args) => logs::exec(args).await,
        Command::Wait(args) => wait::exec(args).await,
        Command::Bench(args) => bench::exec(args).await,
        Command::Cancel(args) => cancel::exec(args).await,
        Command::Upload(args) => upload::exec(args).await,
        Command::Artifacts(args) => artifacts::exec(args).await,
        Command::Gc(args) => gc::exec(args).await,
        Command::Mcp(args) => mcp::exec(args).await,
        Command::Pull(args) => pull::exec(args).await,
        Command::BenchPull(args) => bench_pull::exec(args).await,
        Command::Workers(args) => workers::exec(args).await,
        Command::Drain(args) => workers::drain(args).await,
        Command::Workflow(args) => workflow::exec(args).await,
        Command::RunWorkflow(args) => runs::run_workflow(args).await,
        Command::Runs(args) => runs::runs(args).await,
        Command::RunStatus(args) => runs::run_status(args).await,
    }
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
