//! `jobhost logs ID [-f]`: prints a job's output from its start, stdout's to stdout and
//! the rest to stderr; `-f` follows it until the job ends. [`stream_logs`] is also how
//! `run` shows the job it started, so both print output the same way.

use super::conn::Conn;
use super::output::print_chunk;
use super::progress::{PROGRESS_LOOK, ProgressView};
use clap::Args;
use jobhost_client::Client;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `jobhost logs` options.
#[derive(Debug, Args)]
pub(super) struct LogsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Keep printing new output until the job ends.
    #[arg(short, long)]
    follow: bool,
    /// Job id.
    id: String,
}

/// Prints the job's output.
pub(super) async fn exec(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    stream_logs(&client, &args.id, args.follow, args.conn.json).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a job's output from the start; with `follow`, until the job ends, with a
/// progress bar on a terminal while it reports progress.
pub(super) async fn stream_logs(client: &Client, id: &str, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut view = ProgressView::for_terminal(json);
    let mut looked: Option<Instant> = None;
    let mut next = 0;
    // How long to wait before asking again when nothing new came: short at first, so
    // the end of a job of a few milliseconds is seen within a few milliseconds, then
    // doubling up to `MAX_IDLE` while a long job stays quiet.
    let mut idle = FIRST_IDLE;
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
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(MAX_IDLE);
        } else {
            idle = FIRST_IDLE;
        }
    }
}

/// The first wait of `stream_logs` after a page with nothing new.
const FIRST_IDLE: Duration = Duration::from_millis(2);
/// The longest wait of `stream_logs` between two asks.
const MAX_IDLE: Duration = Duration::from_millis(100);
