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
    /// Label for the caller's own bookkeeping (repeatable), `KEY=VALUE`.
    #[arg(long = "label", value_parser = parse_env)]
    labels: Vec<(String, String)>,
    /// Higher runs first.
    #[arg(long)]
    priority: Option<i64>,
    /// Labels the node that runs it must have (comma-separated: `gpu,linux`).
    #[arg(long, value_delimiter = ',')]
    requires: Vec<String>,
    /// Run this container image (on the machine already) instead of a component; the
    /// arguments are its command.
    #[arg(long)]
    image: Option<String>,
    /// A container's entrypoint, replacing the image's (repeatable, one word each).
    #[arg(long)]
    entrypoint: Vec<String>,
    /// A container's working directory [default: /work].
    #[arg(long)]
    workdir: Option<String>,
    /// GPUs the job needs, held by it alone while it runs.
    #[arg(long)]
    gpus: Option<u32>,
    /// The type its GPUs must be (`h100`); with `--gpus`.
    #[arg(long)]
    gpu_type: Option<String>,
    /// Attempts the job may have: a failed or timed-out one runs again while any
    /// remain [default: the server's].
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Seconds before the first retry, doubling for each later one [default: 1].
    #[arg(long)]
    retry_backoff_s: Option<u32>,
    /// The longest wait between attempts, seconds [default: 300].
    #[arg(long)]
    retry_max_backoff_s: Option<u32>,
    /// Hold the job until this time (RFC 3339).
    #[arg(long)]
    run_at: Option<String>,
    /// Hold the job this many seconds.
    #[arg(long)]
    delay_s: Option<u32>,
}

impl JobArgs {
    /// Whether `--image` asks for a container job.
    pub(super) fn is_container(&self) -> bool {
        self.image.is_some()
    }

    /// The submit request for a job of `plugin` with `args`; with `--image`, a
    /// container job of that image whose command is `args` (and `plugin` is unused).
    pub(super) fn request(&self, plugin: String, args: Vec<String>) -> anyhow::Result<SubmitRequest> {
        let input = match &self.input {
            Some(text) => Some(serde_json::from_str(text).context("--input is not valid JSON")?),
            None => None,
        };
        let (plugin, args, command) = match &self.image {
            Some(_) => (String::new(), Vec::new(), args),
            None => (plugin, args, Vec::new()),
        };
        Ok(SubmitRequest {
            plugin,
            args,
            image: self.image.clone(),
            command,
            entrypoint: (!self.entrypoint.is_empty()).then(|| self.entrypoint.clone()),
            workdir: self.workdir.clone(),
            env: self.env.iter().cloned().collect::<BTreeMap<_, _>>(),
            input,
            timeout_s: self.timeout_s,
            memory_mb: self.memory_mb,
            cpus: self.cpus,
            client_job_id: self.client_job_id.clone(),
            labels: self.labels.iter().cloned().collect(),
            priority: self.priority,
            requires: self.requires.clone(),
            gpus: self.gpus,
            gpu_type: self.gpu_type.clone(),
            max_attempts: self.max_attempts,
            retry: (self.retry_backoff_s.is_some() || self.retry_max_backoff_s.is_some()).then(|| {
                let default = jobhost_model::RetryPolicy::default();
                jobhost_model::RetryPolicy {
                    backoff_s: self.retry_backoff_s.unwrap_or(default.backoff_s),
                    max_backoff_s: self.retry_max_backoff_s.unwrap_or(default.max_backoff_s),
                }
            }),
            run_at: self.run_at.clone(),
            delay_s: self.delay_s,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        job: JobArgs,
    }

    /// Every field of the API's `jobs.submit` request can be set from the terminal: a
    /// field added to `SubmitRequest` without a flag here fails this test. (`plugin`
    /// and `args` are positional; `files_id` is `--files`/`--files-id` of `submit`
    /// and `run`.)
    #[test]
    fn every_field_of_a_submit_request_has_a_flag() {
        let flags = Flags::try_parse_from([
            "t",
            "--env",
            "K=V",
            "--input",
            r#"{"x": 1}"#,
            "--timeout-s",
            "5",
            "--memory-mb",
            "64",
            "--cpus",
            "0.5",
            "--client-job-id",
            "k",
            "--label",
            "team=a",
            "--priority",
            "3",
            "--requires",
            "gpu,fast",
            "--gpus",
            "2",
            "--gpu-type",
            "h100",
            "--max-attempts",
            "3",
            "--retry-backoff-s",
            "2",
            "--run-at",
            "2099-01-01T00:00:00Z",
            "--delay-s",
            "5",
        ])
        .unwrap();
        let request = serde_json::to_value(flags.job.request("p".into(), vec!["a".into()]).unwrap()).unwrap();
        assert_eq!(request["requires"], serde_json::json!(["gpu", "fast"]));
        assert_eq!((&request["gpus"], &request["gpu_type"]), (&serde_json::json!(2), &serde_json::json!("h100")));
        assert_eq!(request["retry"], serde_json::json!({"backoff_s": 2, "max_backoff_s": 300}));
        let container =
            Flags::try_parse_from(["t", "--image", "busybox", "--entrypoint", "/bin/sh", "--workdir", "/w"])
                .unwrap()
                .job
                .request("unused".into(), vec!["-c".into(), "echo hi".into()])
                .unwrap();
        assert_eq!(container.plugin, "");
        assert_eq!(container.image.as_deref(), Some("busybox"));
        assert_eq!((container.command, container.args), (vec!["-c".to_owned(), "echo hi".to_owned()], vec![]));
        assert_eq!(container.entrypoint, Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(container.workdir.as_deref(), Some("/w"));
        let schema = serde_json::to_value(schemars::schema_for!(SubmitRequest)).unwrap();
        let fields = schema["properties"].as_object().unwrap();
        // A component job has no image, command or entrypoint; the container flags
        // are checked below.
        let container_only = ["files_id", "image", "command", "entrypoint", "workdir"];
        for field in fields.keys().filter(|f| !container_only.contains(&f.as_str())) {
            let value = &request[field];
            let set = !(value.is_null()
                || value.as_object().is_some_and(|o| o.is_empty())
                || value.as_array().is_some_and(|a| a.is_empty()));
            assert!(set, "no flag sets `{field}` of jobs.submit: {request}");
        }
    }
}
