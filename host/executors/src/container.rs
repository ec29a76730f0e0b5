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
//!
//! A job holding GPUs (`gpu_devices`) passes them to the engine as a `DeviceRequest`
//! of driver `nvidia` with those device ids, and as `NVIDIA_VISIBLE_DEVICES`; an engine
//! without the NVIDIA container runtime refuses to start it, and the job fails saying so.
//!
//! The same executor runs the containers components start through
//! `jobhost:plugin/executor` ([`ContainerLauncher`]): the same sandbox, with the calling
//! job's `/work` and `/input`, CPUs, memory and GPUs, its output in the calling job's
//! log; it is stopped and removed when the call's future is dropped (the calling job
//! ended, timed out or was cancelled).

use crate::{Executor, Task};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt as _;
use jobhost_model::{
    ContainerCaller, ContainerLauncher, ContainerOutput, ContainerRequest, Cpus, JobSink, JobStatus, Launch,
    LaunchError, LogStream, RunOutcome,
};
use jobhost_runtime::LOG_FLUSH_INTERVAL;
use jobhost_runtime::capture::LogCapture;
use jobhost_runtime::sandbox::Sandbox;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The runtime the engine's connections live on, where launched containers are
    /// watched (a component calls from the job runtime).
    handle: tokio::runtime::Handle,
    /// Numbers the containers components launch.
    launched: Arc<AtomicU64>,
}

/// What one container runs, however it was asked for.
struct Spec<'a> {
    name: String,
    job_id: &'a str,
    attempt: u32,
    image: &'a str,
    command: &'a [String],
    entrypoint: Option<Vec<String>>,
    workdir: Option<String>,
    env: Vec<String>,
    /// `(host, container, read-only)`.
    binds: Vec<(&'a Path, &'a str, bool)>,
    cpus: Cpus,
    memory_mb: u32,
    gpu_devices: &'a [u32],
}

impl ContainerExecutor {
    /// Connects to the engine at `engine` (`unix:///path`), else `DOCKER_HOST`, else the
    /// default socket, and agrees on an API version with it; an error says why no
    /// engine can be used.
    pub async fn connect(
        engine: Option<&str>,
        node: &str,
        max_log_bytes: u64,
        max_output_bytes: u64,
    ) -> Result<ContainerExecutor, String> {
        let docker = match engine {
            Some(socket) => Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| format!("no container engine: {e}"))?;
        let docker =
            docker.negotiate_version().await.map_err(|e| format!("the container engine did not answer: {e}"))?;
        docker.ping().await.map_err(|e| format!("the container engine did not answer: {e}"))?;
        Ok(ContainerExecutor {
            docker,
            node: node.to_owned(),
            max_log_bytes,
            max_output_bytes,
            handle: tokio::runtime::Handle::current(),
            launched: Arc::new(AtomicU64::new(0)),
        })
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
        let (output_dir, work_dir) = (sandbox.output(), sandbox.work());
        let spec = Spec {
            name: format!("jobhost-{}-{}", job.id, job.attempt),
            job_id: &job.id,
            attempt: job.attempt,
            image: &spec.image,
            command: &job.args,
            entrypoint: spec.entrypoint.clone(),
            workdir: spec.workdir.clone(),
            env: job.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            binds: vec![
                (&prepared.input, "/input", true),
                (&output_dir, "/output", false),
                (&work_dir, "/work", false),
            ],
            cpus: job.cpus,
            memory_mb: job.memory_mb,
            gpu_devices: &job.gpu_devices,
        };
        let id = self.create(&spec, &owner).await?;
        sink.container(&job.id, job.attempt, &id);
        let timeout = Duration::from_secs(u64::from(job.timeout_s));
        let capture = LogCapture::for_attempt(self.max_log_bytes, job.attempt);
        let flushing = {
            let (capture, sink, job_id) = (capture.clone(), sink.clone(), job.id.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
                loop {
                    tick.tick().await;
                    sink.logs(&job_id, capture.take(false));
                }
            })
        };
        let output: ContainerOutput = {
            let capture = capture.clone();
            Arc::new(move |stream, bytes| capture.write(stream, bytes))
        };
        let ended = self.watch(&id, Some(timeout), output, &cancel, STOP_GRACE_S, !job.gpu_devices.is_empty()).await;
        flushing.abort();
        sink.logs(&job.id, capture.take(true));
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

    /// Creates the container `spec` describes, sandboxed, as `owner`'s user: its id.
    async fn create(&self, spec: &Spec<'_>, owner: &std::fs::Metadata) -> Result<String, String> {
        let memory = i64::from(spec.memory_mb) << 20;
        let mut env = spec.env.clone();
        let device_requests = (!spec.gpu_devices.is_empty()).then(|| {
            let ids: Vec<String> = spec.gpu_devices.iter().map(u32::to_string).collect();
            env.push(format!("NVIDIA_VISIBLE_DEVICES={}", ids.join(",")));
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                device_ids: Some(ids),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.to_owned()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.to_vec()),
            entrypoint: spec.entrypoint.clone(),
            working_dir: Some(spec.workdir.clone().unwrap_or_else(|| "/work".into())),
            env: Some(env),
            user: Some(format!("{}:{}", owner.uid(), owner.gid())),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                ("jobhost.job".to_owned(), spec.job_id.to_owned()),
                ("jobhost.attempt".to_owned(), spec.attempt.to_string()),
                ("jobhost.node".to_owned(), self.node.clone()),
            ])),
            host_config: Some(HostConfig {
                binds: Some(
                    spec.binds
                        .iter()
                        .map(|(host, at, ro)| format!("{}:{at}:{}", host.display(), if *ro { "ro" } else { "rw" }))
                        .collect(),
                ),
                network_mode: Some("none".into()),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev,size=64m".to_owned())])),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                pids_limit: Some(PIDS_LIMIT),
                nano_cpus: Some(i64::from(spec.cpus.millis()) * 1_000_000),
                memory: Some(memory),
                memory_swap: Some(memory),
                device_requests,
                ..Default::default()
            }),
            ..Default::default()
        };
        // A container of this name left by a process that died is not this run's.
        self.remove(&spec.name).await;
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(e) => Err(create_error(spec.image, &e)),
        }
    }

    /// Starts container `id`, streams its output into `output` until it ends, and
    /// says how it ended: its exit, the deadline (killed), or `stop` (SIGTERM, SIGKILL
    /// `grace` s later). `gpus`: it asks for GPUs, so a refused start names the
    /// NVIDIA runtime.
    async fn watch(
        &self,
        id: &str,
        timeout: Option<Duration>,
        output: ContainerOutput,
        stop: &CancellationToken,
        grace: i32,
        gpus: bool,
    ) -> Result<Ended, String> {
        if let Err(e) = self.docker.start_container(id, None).await {
            return Err(start_error(&e, gpus));
        }
        let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(id, Some(options));
        let reading = tokio::spawn(async move {
            while let Some(item) = logs.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => output(LogStream::Stdout, &message),
                    Ok(LogOutput::StdErr { message }) => output(LogStream::Stderr, &message),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a container's output");
                        break;
                    }
                }
            }
        });
        let mut wait = self.docker.wait_container(id, None);
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            exit = wait.next() => match exit {
                Some(Ok(done)) => Ended::Exited(i32::try_from(done.status_code).unwrap_or(i32::MAX)),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    Ended::Exited(i32::try_from(code).unwrap_or(i32::MAX))
                }
                Some(Err(e)) => return Err(format!("waiting for the container: {e}")),
                None => return Err("the engine stopped answering about the container".into()),
            },
            () = deadline => {
                let kill = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
                let _ = self.docker.kill_container(id, Some(kill)).await;
                Ended::TimedOut
            }
            () = stop.cancelled() => {
                let options = StopContainerOptionsBuilder::default().t(grace).build();
                let _ = self.docker.stop_container(id, Some(options)).await;
                Ended::Cancelled
            }
        };
        // The output stream ends with the container; what it held is kept.
        let _ = tokio::time::timeout(Duration::from_secs(2), reading).await;
        Ok(ended)
    }

    /// Runs a container a component asked for, to its exit: the same sandbox as a
    /// container job's, over the calling job's directories. Removed whatever happens;
    /// `stop` (the caller went away) kills it at once.
    async fn run_launched(
        &self,
        caller: ContainerCaller,
        request: ContainerRequest,
        output: ContainerOutput,
        stop: CancellationToken,
    ) -> Result<i32, LaunchError> {
        let failed = LaunchError::Failed;
        let owner =
            std::fs::metadata(&caller.work_dir).map_err(|e| failed(format!("reading the calling job's /work: {e}")))?;
        let n = self.launched.fetch_add(1, Ordering::Relaxed);
        let spec = Spec {
            name: format!("jobhost-{}-{}-c{n}", caller.job_id, caller.attempt),
            job_id: &caller.job_id,
            attempt: caller.attempt,
            image: &request.image,
            command: &request.command,
            entrypoint: request.entrypoint.clone(),
            workdir: request.workdir.clone(),
            env: request.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            // No `/output`: what the caller keeps, it copies from `/work` into its own.
            binds: vec![(&caller.input_dir, "/input", true), (&caller.work_dir, "/work", false)],
            cpus: caller.cpus,
            memory_mb: caller.memory_mb,
            gpu_devices: &caller.gpu_devices,
        };
        let id = self.create(&spec, &owner).await.map_err(failed)?;
        let timeout = request.timeout_s.map(|s| Duration::from_secs(u64::from(s)));
        let ended = self.watch(&id, timeout, output, &stop, 0, !caller.gpu_devices.is_empty()).await;
        let oom = match self.docker.inspect_container(&id, None).await {
            Ok(inspect) => inspect.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(_) => false,
        };
        self.remove(&id).await;
        match ended.map_err(failed)? {
            _ if oom => {
                Err(failed(format!("memory limit of {} MiB exceeded: the container was killed", caller.memory_mb)))
            }
            Ended::Exited(code) => Ok(code),
            Ended::TimedOut => Err(failed(format!(
                "timeout_s limit of {} s reached: the container was killed",
                request.timeout_s.unwrap_or_default()
            ))),
            Ended::Cancelled => Err(failed("the calling job ended: the container was stopped".into())),
        }
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

impl ContainerLauncher for ContainerExecutor {
    fn launch(&self, caller: ContainerCaller, request: ContainerRequest, output: ContainerOutput) -> Launch {
        let this = self.clone();
        let stop = CancellationToken::new();
        // Dropping the caller's future stops the container: the task sees `stop`.
        let guard = stop.clone().drop_guard();
        let run = self.handle.spawn(async move { this.run_launched(caller, request, output, stop).await });
        Box::pin(async move {
            let _guard = guard;
            run.await.unwrap_or_else(|e| Err(LaunchError::Failed(format!("the container's watcher failed: {e}"))))
        })
    }
}

/// Launches nothing: a node where no container engine answered at start.
#[derive(Debug)]
pub struct NoEngine;

impl ContainerLauncher for NoEngine {
    fn launch(&self, _: ContainerCaller, _: ContainerRequest, _: ContainerOutput) -> Launch {
        Box::pin(async {
            Err(LaunchError::Unavailable(
                "this node runs no containers: no container engine answered at its start".into(),
            ))
        })
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

/// Why the engine would not start the container, in the user's terms: a container
/// asking for GPUs on an engine without the NVIDIA runtime says so.
fn start_error(e: &bollard::errors::Error, gpus: bool) -> String {
    let text = e.to_string();
    if gpus && (text.contains("nvidia") || text.contains("device driver")) {
        format!(
            "the container asks for GPUs but this engine has no NVIDIA container runtime \
             (nvidia-container-toolkit): {text}"
        )
    } else {
        format!("starting the container: {text}")
    }
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
