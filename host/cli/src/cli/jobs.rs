//! `jobhost jobs`: lists jobs newest first, one line each (id, status, plugin, creation
//! time), optionally only those of one status. The status is checked here against
//! the API's own names so a typo is an error, not an empty list.

use super::conn::Conn;
use anyhow::Context as _;
use clap::Args;
use jobhost_model::JobStatus;
use std::process::ExitCode;

/// `jobhost jobs` options.
#[derive(Debug, Args)]
pub(super) struct JobsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only jobs with this status.
    #[arg(long)]
    status: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

/// Prints one page of jobs.
pub(super) async fn exec(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let JobsArgs { conn, status, limit } = args;
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
