//! Container jobs through the Docker Engine API (`bollard`; `DOCKER_HOST` or the default
//! socket, so Podman's Docker-compatible socket works too).
//!
//! A container job gets the same directory a component job gets (`jobs/<id>/` with
//! `input/`, `output/` and `work/`, prepared by the runtime's [`Sandbox`]) and sees it
//! at `/input` (read-only), `/output` and `/work`. Everything else is shut: no network
//! (`NetworkMode: none`), a read-only root file system (a small `/tmp` in memory), all
//! capabilities dropped, `no-new-privileges`, a pids limit, the job's CPUs and memory
//! as `NanoCpus` and `Memory` (no swap), and the job's user id, so its files belong to
//! the server's user. Images are never pulled: the image must be on the machine.
//!
//! Output is streamed from the engine into the job's log through the runtime's
//! [`LogCapture`] (the same chunking, UTF-8 handling and per-job cap as a component's).
//! The deadline kills the container (`timed_out`); a cancel stops it (SIGTERM, SIGKILL
//! 3 s later); an out-of-memory kill fails the job naming the limit. The container is
//! removed whatever happened; its name (`jobhost-<job>-<attempt>`) and labels
//! (`jobhost.job`, `jobhost.attempt`, `jobhost.node`) tie it to the attempt, and a node
//! starting again removes what its previous process left ([`ContainerExecutor::reconcile`]).

use crate::{Executor, Task};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt as _;
use jobhost_model::{JobSink, JobStatus, LogStream, RunOutcome};
use jobhost_runtime::LOG_FLUSH_INTERVAL;
use jobhost_runtime::capture::LogCapture;
use jobhost_runtime::sandbox::Sandbox;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Processes a container may run at once.
const PIDS_LIMIT: i64 = 512;
/// Seconds between a cancel's SIGTERM and its SIGKILL.
const STOP_GRACE_S: i32 = 3;

/// Runs container jobs on one engine.
#[derive(Debug, Clone)]
pub struct ContainerExecutor {
    docker: Docker,
    /// This node's id, on every container's `jobhost.node` label.
    node: String,
    /// Bytes of output kept per job.
    max_log_bytes: u64,
    /// Bytes a job may leave under `/output`.
    max_output_bytes: u64,
}

impl ContainerExecutor {
    /// Connects to the engine (`DOCKER_HOST`, else the default socket) and agrees on an
    /// API version with it; an error says why no engine can be used.
    pub async fn connect(node: &str, max_log_bytes: u64, max_output_bytes: u64) -> Result<ContainerExecutor, String> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| format!("no container engine: {e}"))?;
        let docker =
            docker.negotiate_version().await.map_err(|e| format!("the container engine did not answer: {e}"))?;
        docker.ping().await.map_err(|e| format!("the container engine did not answer: {e}"))?;
        Ok(ContainerExecutor { docker, node: node.to_owned(), max_log_bytes, max_output_bytes })
    }

    /// Removes every container a previous process of this node left (labelled with its
    /// node id): that process is gone, so none of them belongs to a run any more; the
    /// jobs are recovered as after any crash. Returns how many were removed.
    pub async fn reconcile(&self) -> Result<usize, String> {
        let filters = HashMap::from([("label", vec![format!("jobhost.node={}", self.node)])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let left = self.docker.list_containers(Some(options)).await.map_err(|e| format!("listing containers: {e}"))?;
        for c in &left {
            if let Some(id) = &c.id {
                self.remove(id).await;
            }
        }
        Ok(left.len())
    }

    async fn run_container(
        &self,
        task: Task,
        sink: Arc<dyn JobSink>,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, String> {
        let Task { job, job_dir, input_from, .. } = task;
        let spec = job.container.clone().ok_or("the job has no container spec")?;
        let sandbox = Sandbox::new(job_dir.clone()).with_input_from(input_from);
        let (sandbox, prepared) = tokio::task::spawn_blocking(move || {
            let prepared = sandbox.prepare();
            (sandbox, prepared)
        })
        .await
        .map_err(|e| format!("preparing the job's directory: {e}"))?;
        let prepared = prepared.map_err(|e| format!("preparing the job's directory: {e}"))?;
        let owner = std::fs::metadata(&job_dir).map_err(|e| format!("reading the job's directory: {e}"))?;
        let name = format!("jobhost-{}-{}", job.id, job.attempt);
        // A container of this attempt left by a process that died is not this run's.
        self.remove(&name).await;
        let memory = i64::from(job.memory_mb) << 20;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!job.args.is_empty()).then(|| job.args.clone()),
            entrypoint: spec.entrypoint.clone(),
            working_dir: Some(spec.workdir.clone().unwrap_or_else(|| "/work".into())),
            env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(format!("{}:{}", owner.uid(), owner.gid())),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                ("jobhost.job".to_owned(), job.id.clone()),
                ("jobhost.attempt".to_owned(), job.attempt.to_string()),
                ("jobhost.node".to_owned(), self.node.clone()),
            ])),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{}:/input:ro", prepared.input.display()),
                    format!("{}:/output:rw", sandbox.output().display()),
                    format!("{}:/work:rw", sandbox.work().display()),
                ]),
                network_mode: Some("none".into()),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev,size=64m".to_owned())])),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                pids_limit: Some(PIDS_LIMIT),
                nano_cpus: Some(i64::from(job.cpus.millis()) * 1_000_000),
                memory: Some(memory),
                memory_swap: Some(memory),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created.id,
            Err(e) => return Err(create_error(&spec.image, &e)),
        };
        sink.container(&job.id, job.attempt, &id);
        let timeout = Duration::from_secs(u64::from(job.timeout_s));
        let ended = self.watch(&id, &job.id, timeout, &sink, &cancel).await;
        let oom = match self.docker.inspect_container(&id, None).await {
            Ok(inspect) => inspect.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(_) => false,
        };
        self.remove(&id).await;
        let mut outcome = match ended? {
            Ended::Exited(0) if !oom => outcome(JobStatus::Completed, Some(0), None),
            _ if oom => outcome(
                JobStatus::Failed,
                None,
                Some(format!("memory limit of {} MiB exceeded: the container was killed", job.memory_mb)),
            ),
            Ended::Exited(code) => outcome(JobStatus::Failed, Some(code), Some(format!("exited with code {code}"))),
            Ended::TimedOut => outcome(
                JobStatus::TimedOut,
                None,
                Some(format!("timeout_s limit of {} s reached: the container was killed", job.timeout_s)),
            ),
            Ended::Cancelled => outcome(JobStatus::Cancelled, None, Some("cancelled".into())),
        };
        let collected = tokio::task::spawn_blocking(move || {
            sandbox.remove_escaping_links()?;
            let (used, _) = jobhost_runtime::sandbox::tree_stats(&sandbox.output());
            Ok::<_, std::io::Error>((used, sandbox.collect_artifacts()?))
        })
        .await
        .map_err(|e| format!("collecting artifacts: {e}"))?
        .map_err(|e| format!("collecting artifacts: {e}"))?;
        let (used, artifacts) = collected;
        if used > self.max_output_bytes && outcome.status == JobStatus::Completed {
            outcome = RunOutcome {
                status: JobStatus::Failed,
                error: Some(format!("output limit of {} bytes exceeded: /output holds {used}", self.max_output_bytes)),
                ..outcome
            };
        }
        outcome.artifacts = artifacts;
        Ok(outcome)
    }

    /// Starts container `id`, streams its output into `sink` until it ends, and says
    /// how it ended: its exit, the deadline, or a cancel.
    async fn watch(
        &self,
        id: &str,
        job_id: &str,
        timeout: Duration,
        sink: &Arc<dyn JobSink>,
        cancel: &CancellationToken,
    ) -> Result<Ended, String> {
        self.docker.start_container(id, None).await.map_err(|e| format!("starting the container: {e}"))?;
        let capture = LogCapture::new(self.max_log_bytes);
        let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(id, Some(options));
        let reading = {
            let capture = capture.clone();
            tokio::spawn(async move {
                while let Some(item) = logs.next().await {
                    match item {
                        Ok(LogOutput::StdOut { message }) => capture.write(LogStream::Stdout, &message),
                        Ok(LogOutput::StdErr { message }) => capture.write(LogStream::Stderr, &message),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "reading a container's output");
                            break;
                        }
                    }
                }
            })
        };
        let flushing = {
            let (capture, sink, job_id) = (capture.clone(), sink.clone(), job_id.to_owned());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
                loop {
                    tick.tick().await;
                    sink.logs(&job_id, capture.take(false));
                }
            })
        };
        let mut wait = self.docker.wait_container(id, None);
        let ended = tokio::select! {
            exit = wait.next() => match exit {
                Some(Ok(done)) => Ended::Exited(i32::try_from(done.status_code).unwrap_or(i32::MAX)),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    Ended::Exited(i32::try_from(code).unwrap_or(i32::MAX))
                }
                Some(Err(e)) => return Err(format!("waiting for the container: {e}")),
                None => return Err("the engine stopped answering about the container".into()),
            },
            _ = tokio::time::sleep(timeout) => {
                let kill = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
                let _ = self.docker.kill_container(id, Some(kill)).await;
                Ended::TimedOut
            }
            _ = cancel.cancelled() => {
                let stop = StopContainerOptionsBuilder::default().t(STOP_GRACE_S).build();
                let _ = self.docker.stop_container(id, Some(stop)).await;
                Ended::Cancelled
            }
        };
        // The output stream ends with the container; what it held is kept.
        let _ = tokio::time::timeout(Duration::from_secs(2), reading).await;
        flushing.abort();
        sink.logs(job_id, capture.take(true));
        Ok(ended)
    }

    /// Removes a container, running or not; one that is not there is fine.
    async fn remove(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        if let Err(e) = self.docker.remove_container(id, Some(options)).await
            && !matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
        {
            tracing::warn!(container = id, error = %e, "removing a container");
        }
    }
}

#[async_trait::async_trait]
impl Executor for ContainerExecutor {
    async fn run(&self, task: Task, sink: Arc<dyn JobSink>, cancel: CancellationToken) -> RunOutcome {
        self.run_container(task, sink, cancel).await.unwrap_or_else(RunOutcome::failed)
    }
}

/// How a container's run ended.
enum Ended {
    Exited(i32),
    TimedOut,
    Cancelled,
}

fn outcome(status: JobStatus, exit_code: Option<i32>, error: Option<String>) -> RunOutcome {
    RunOutcome { status, exit_code, error, detail: None, artifacts: Vec::new() }
}

/// Why the engine would not create the container, in the user's terms.
fn create_error(image: &str, e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
            format!("image {image:?} is not on this machine (jobhost does not pull images; load or build it first)")
        }
        other => format!("creating the container: {other}"),
    }
}
