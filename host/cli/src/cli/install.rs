//! `jobhost install NAME FILE.wasm`: uploads a component and installs it under a name
//! that jobs then use; prints the installed plugin (its kind and digest), the record
//! a later `submit` resolves by name.

use super::conn::Conn;
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `jobhost install` options.
#[derive(Debug, Args)]
pub(super) struct InstallArgs {
    #[command(flatten)]
    conn: Conn,
    /// Name jobs will use.
    name: String,
    /// The .wasm file.
    file: PathBuf,
    /// Let its jobs do more than the sandbox allows: `containers` (run containers
    /// through `jobhost:plugin/executor`). Repeat for several.
    #[arg(long = "grant", value_parser = parse_grant)]
    grants: Vec<jobhost_model::PluginGrant>,
}

fn parse_grant(s: &str) -> Result<jobhost_model::PluginGrant, String> {
    jobhost_model::PluginGrant::parse(s).ok_or_else(|| format!("{s:?} is not a grant (known: containers)"))
}

/// Installs the file and prints what was installed.
pub(super) async fn exec(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let InstallArgs { conn, name, file, grants } = args;
    let client = conn.client()?;
    let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let plugin = client.install_granted(&name, &wasm, &grants).await?.plugin;
    if conn.json {
        println!("{}", serde_json::to_string(&plugin)?);
    } else {
        println!("installed {} ({}, {})", plugin.name, plugin.kind.as_str(), plugin.digest);
    }
    Ok(ExitCode::SUCCESS)
}
