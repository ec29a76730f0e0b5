//! `jobhost workers`: the nodes on the server's database (`workers.list`), one line
//! each: id, status, name, labels, running jobs, usage against capacity (GPUs by type
//! when it has some) and last heartbeat. `jobhost drain ID`: `workers.drain`.

use super::conn::Conn;
use clap::Args;
use std::process::ExitCode;

/// `jobhost workers` options.
#[derive(Debug, Args)]
pub(super) struct WorkersArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Lists the nodes.
pub(super) async fn exec(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let workers = args.conn.client()?.workers().await?;
    if args.conn.json {
        println!("{}", serde_json::to_string(&workers)?);
        return Ok(ExitCode::SUCCESS);
    }
    for w in &workers {
        let labels = if w.labels.is_empty() { "-".to_owned() } else { w.labels.join(",") };
        let gpus: String =
            w.gpu_usage.iter().map(|g| format!("  gpus.{}={}/{}", g.gpu_type, g.used, g.total)).collect();
        println!(
            "{}  {:<8}  {}  labels={labels}  running={}/{}  cpus={}/{}  memory={}/{}MiB{gpus}  seen={}",
            w.id,
            w.status.as_str(),
            w.name,
            w.running_jobs,
            w.concurrency,
            f64::from(w.used_millicpus) / 1000.0,
            f64::from(w.millicpus) / 1000.0,
            w.used_memory_mb,
            w.memory_mb,
            w.last_seen
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `jobhost drain` options.
#[derive(Debug, Args)]
pub(super) struct DrainArgs {
    /// The node's id (`wrk_…`, from `jobhost workers`).
    id: String,
    #[command(flatten)]
    conn: Conn,
}

/// Asks a node to drain.
pub(super) async fn drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let worker = args.conn.client()?.drain(&args.id).await?;
    if args.conn.json {
        println!("{}", serde_json::to_string(&worker)?);
    } else {
        println!(
            "{} ({}) is draining: it takes no new job and stops once its {} running end",
            worker.id, worker.name, worker.running_jobs
        );
    }
    Ok(ExitCode::SUCCESS)
}
