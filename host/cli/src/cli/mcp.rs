//! `jobhost mcp`: starts the MCP server of [`crate::mcp`] on stdin/stdout, driving the
//! jobhost server at `--server`. Its options are not `Conn`'s:
//! stdout carries the protocol, so there is no `--json`, and the token is read from a
//! file (or the data dir's), never taken on the command line.

use super::conn::{connect, read_token};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `jobhost mcp` options.
#[derive(Debug, Args)]
pub(super) struct McpArgs {
    /// Server URL.
    #[arg(long, env = "JOBHOST_URL", default_value = "http://127.0.0.1:7717")]
    server: String,
    /// File holding the API token [default: the data dir's `token`, if present].
    #[arg(long, env = "JOBHOST_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

/// Serves MCP until the client closes stdin.
pub(super) async fn exec(args: McpArgs) -> anyhow::Result<ExitCode> {
    // stdout carries the protocol; problems go to stderr, which MCP clients keep.
    let _logs = crate::telemetry::init("warn", crate::telemetry::Traces::Off)?;
    let token = read_token(args.token_file)?;
    crate::mcp::serve_stdio(connect(&args.server, token)?).await?;
    Ok(ExitCode::SUCCESS)
}
