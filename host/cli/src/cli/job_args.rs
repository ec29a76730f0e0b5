//! The job options `submit` and `run` share (`--env`, `--input`, the limits, the
//! idempotency key) and their turning into the API's own [`SubmitRequest`], so both
//! commands ask for a job in exactly the same words.

use anyhow::Context as _;
use clap::Args;
use jobhost_model::SubmitRequest;
use std::collections::BTreeMap;

/// What a job asks for besides its plugin and arguments.
#[derive(Debug, Args)]
pub(super) struct JobArgs {
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
    cpus: Option<jobhost_model::Cpus>,
    /// Idempotency key.
    #[arg(long)]
    client_job_id: Option<String>,
}

impl JobArgs {
    /// The submit request for a job of `plugin` with `args`.
    pub(super) fn request(&self, plugin: String, args: Vec<String>) -> anyhow::Result<SubmitRequest> {
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

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_cpus(text: &str) -> Result<jobhost_model::Cpus, String> {
    text.parse::<f64>()
        .ok()
        .and_then(jobhost_model::Cpus::from_cpus)
        .filter(|cpus| cpus.millis() > 0)
        .ok_or_else(|| format!("{text:?} is not a number of CPUs: more than 0, in steps of 0.001"))
}
