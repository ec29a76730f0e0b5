//! `jobhost workers`: the nodes on the server's database (`workers.list`), one line
//! each: id, status, name, labels, capacity and last heartbeat.

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
        println!(
            "{}  {:<8}  {}  labels={labels}  concurrency={}  cpus={}  memory={}MiB  seen={}",
            w.id,
            w.status.as_str(),
            w.name,
            w.concurrency,
            f64::from(w.millicpus) / 1000.0,
            w.memory_mb,
            w.last_seen
        );
    }
    Ok(ExitCode::SUCCESS)
}
