//! How a client command reaches the server: the `--server`/`--token`/`--token-file`
//! options every client command flattens in ([`Conn`]), and the token lookup and
//! connection the `mcp` command uses. The token's order of precedence lives here only,
//! so every command finds the same token the same way.

use super::default_data_dir;
use anyhow::Context as _;
use clap::Args;
use jobhost_client::Client;
use jobhost_server::auth;
use std::path::PathBuf;

/// The server a client command talks to, the token it shows, and its output format.
#[derive(Debug, Args)]
pub(super) struct Conn {
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
    pub(super) json: bool,
}

impl Conn {
    /// A client of `--server` with the token from `--token`, `JOBHOST_TOKEN`,
    /// `--token-file` or the default data dir's `token` file, in that order.
    pub(super) fn client(&self) -> anyhow::Result<Client> {
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

/// The API token: from `path` (which must exist when given), else from the default
/// data dir's `token` file when there is one.
pub(super) fn read_token(path: Option<PathBuf>) -> anyhow::Result<Option<String>> {
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
pub(super) fn connect(server: &str, token: Option<String>) -> anyhow::Result<Client> {
    Ok(Client::with_token(server, token.as_deref())?)
}
