//! Running one job: choosing its sandbox (a spare from the pool, a fresh one, or the
//! directories its grant mounts), building its WASI context and store, racing the guest
//! against its deadline, cancellation and output limit, and turning how it ended into a
//! [`RunOutcome`] with its artifacts.
//!
//! Output is handed to the sink while the guest runs ([`LOG_FLUSH_INTERVAL`]) and the
//! rest once it stops, so a job's log is complete whichever way it ended. Every way a
//! run can stop (exit code, plugin error, trap, memory or table limit, resource table,
//! `/output` quota, timeout, cancel) gets one message a user can act on; the longer
//! account (a plugin's chain of causes, a trap's error chain and backtrace) goes to
//! `detail`.

use crate::cache::Prepared;
use crate::capture::LogCapture;
use crate::quota::{self, OutputQuota};
use crate::sandbox::{self, Sandbox};
use crate::state::{JobLimits, JobState};
use crate::{JobSink, RunSpec, Runtime, http, root_message};
use jobhost_model::{JobStatus, LogStream, RunOutcome};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wasmtime::Trap;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// How often captured output is handed to the sink while a job runs.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// How often the size of a running job's `/output` is measured against its limit.
/// Writes through `/output` descriptors are refused at the limit (see `quota`); the
/// measurement is the backstop for what reaches `/output` another way (a rename or
/// hard link from `/work`, `set-size`), which can overshoot by one period.
pub const OUTPUT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

impl Runtime {
    /// Runs one job to its end: prepares its sandbox, instantiates the component,
    /// enforces the deadline and cancellation, flushes output and collects artifacts.
    pub async fn run(self: &Arc<Self>, spec: RunSpec, sink: Arc<dyn JobSink>, cancel: CancellationToken) -> RunOutcome {
        let (mut sandbox, layout) = match self.sandbox(&spec).await {
            Ok(ready) => ready,
            Err(e) => {
                return RunOutcome::failed(format!("preparing the sandbox: {e}"));
            }
        };
        let capture = LogCapture::for_attempt(self.config.max_log_bytes, spec.attempt);
        let flusher = {
            let (capture, sink, job_id) = (capture.clone(), sink.clone(), spec.job_id.clone());
            let stop = CancellationToken::new();
            let handle = tokio::spawn({
                let stop = stop.clone();
                async move {
                    // Nothing to flush at the start: the first flush is one period in.
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + LOG_FLUSH_INTERVAL, LOG_FLUSH_INTERVAL);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = stop.cancelled() => break,
                        }
                        let chunks = capture.take(false);
                        if !chunks.is_empty() {
                            sink.logs(&job_id, chunks);
                        }
                    }
                }
            });
            (stop, handle)
        };

        let timeout = spec.timeout;
        // Whether the guest was stopped in the middle (its last host call may still be
        // finishing on a blocking thread), rather than returning.
        let mut interrupted = true;
        let mut outcome = tokio::select! {
            r = self.execute(&spec, &sandbox, &layout, capture.clone(), sink.clone()) => {
                interrupted = false;
                r
            }
            _ = tokio::time::sleep(timeout) => Ended::new(
                JobStatus::TimedOut,
                None,
                Some(format!("timeout_s limit of {} s reached", timeout.as_secs())),
            ),
            _ = cancel.cancelled() => Ended::new(JobStatus::Cancelled, None, Some("cancelled by request".into())),
            over = watch_output(sandbox.output(), self.config.max_output_bytes) => Ended::new(
                JobStatus::Failed,
                None,
                Some(format!(
                    "output limit of {} bytes exceeded ({over} bytes under /output)",
                    self.config.max_output_bytes
                )),
            ),
        };

        flusher.0.cancel();
        let _ = flusher.1.await;
        let rest = capture.take(true);
        if !rest.is_empty() {
            sink.logs(&spec.job_id, rest);
        }

        // A spare left empty goes back to the pool; one with files becomes `jobs/<id>/`,
        // and so does the spare of an interrupted guest, whatever it holds: a file
        // operation it started may still land, and must land in its own directory.
        // Metadata operations only: two directory reads, and a `mkdir` and renames when
        // the spare is kept.
        let given_back = sandbox.settle(&self.spares, !interrupted).unwrap_or_else(|e| {
            outcome.note(&format!("moving the sandbox into place failed: {e}"));
            false
        });
        // No files (a spare given back, most short jobs) is seen at once; otherwise, on a
        // blocking thread, symlinks leading out of the job's tree are removed and the
        // files of `/output` walked and hashed.
        let collected = if given_back {
            Ok(Ok(Vec::new()))
        } else {
            tokio::task::spawn_blocking(move || {
                sandbox.remove_escaping_links()?;
                if sandbox.output_is_empty() { Ok(Vec::new()) } else { sandbox.collect_artifacts() }
            })
            .await
        };
        let artifacts = match collected {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                outcome.note(&format!("collecting artifacts failed: {e}"));
                Vec::new()
            }
            Err(e) => {
                outcome.note(&format!("collecting artifacts failed: {e}"));
                Vec::new()
            }
        };
        // The watcher samples; a guest that moves a large file into `/output` and exits
        // at once ends between two samples. What it left is measured here too.
        let left: u64 = artifacts.iter().map(|a| a.size_bytes).sum();
        if outcome.status == JobStatus::Completed && left > self.config.max_output_bytes {
            outcome = Ended::new(
                JobStatus::Failed,
                outcome.exit_code,
                Some(format!(
                    "output limit of {} bytes exceeded ({left} bytes under /output)",
                    self.config.max_output_bytes
                )),
            );
        }
        RunOutcome {
            status: outcome.status,
            exit_code: outcome.exit_code,
            error: outcome.error,
            detail: outcome.detail,
            artifacts,
        }
    }

    /// The job's sandbox: a spare from the pool when one is ready and the job may use
    /// it (no file system work at all), else made on a blocking thread.
    async fn sandbox(&self, spec: &RunSpec) -> std::io::Result<(Sandbox, sandbox::Prepared)> {
        let sandbox = Sandbox::new(spec.job_dir.clone()).with_input_from(spec.input_from.clone());
        // A job shown its own mounts uses none of the sandbox's directories but its own;
        // one that starts containers runs in its own directory from the start, which
        // the containers' mounts name.
        let own = !spec.grant.mounts.is_empty() || spec.grant.containers.is_some();
        if !own
            && sandbox.may_use_spare()
            && let Some(spare) = self.spares.pop()
        {
            return Ok(sandbox.in_spare(spare));
        }
        let spares = self.spares.clone();
        tokio::task::spawn_blocking(move || {
            if own {
                let prepared = sandbox.prepare()?;
                Ok((sandbox, prepared))
            } else {
                sandbox.prepare_with(&spares)
            }
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    async fn execute(
        self: &Arc<Self>,
        spec: &RunSpec,
        sandbox: &Sandbox,
        layout: &sandbox::Prepared,
        capture: Arc<LogCapture>,
        sink: Arc<dyn JobSink>,
    ) -> Ended {
        let failed = |msg: String| Ended::new(JobStatus::Failed, None, Some(msg));
        let hex = spec.digest.strip_prefix("sha256:").unwrap_or(&spec.digest);
        let cached = self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(hex).cloned();
        let prepared = match cached {
            Some(p) => p,
            // Not loaded yet: reading and perhaps compiling it is blocking work.
            None => {
                let this = self.clone();
                let digest = spec.digest.clone();
                match tokio::task::spawn_blocking(move || this.load_blocking(&digest)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => return failed(format!("loading the component: {e}")),
                    Err(e) => return failed(format!("loading the component: {e}")),
                }
            }
        };

        let mut wasi = WasiCtxBuilder::new();
        let mut argv = Vec::with_capacity(spec.args.len() + 1);
        argv.push(spec.plugin.clone());
        argv.extend(spec.args.iter().cloned());
        wasi.args(&argv)
            .envs(&spec.env.iter().collect::<Vec<_>>())
            .stdout(capture.stream(LogStream::Stdout))
            .stderr(capture.stream(LogStream::Stderr));
        if spec.grant.mounts.is_empty() {
            if let Err(e) = sandbox.apply(&mut wasi, &layout.input) {
                return failed(format!("preparing the sandbox: {e}"));
            }
        } else {
            for mount in &spec.grant.mounts {
                if let Err(e) = wasi.preopened_dir(&mount.host, &mount.guest, wasmtime_wasi::FsPerms::ReadWrite) {
                    return failed(format!(
                        "preparing the sandbox: preopen {} from {}: {e:#}",
                        mount.guest,
                        mount.host.display()
                    ));
                }
            }
            // The same policy as the sandbox's, over these directories instead.
            wasi.initial_cwd(&spec.grant.mounts[0].guest)
                .max_random_size(sandbox::MAX_RANDOM_BYTES)
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .socket_addr_check(|_, _| Box::pin(async { false }));
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.config.max_open_resources);
        let mut state = JobState {
            wasi: wasi.build(),
            table,
            limits: JobLimits::new(u64::from(spec.memory_mb) << 20),
            output: OutputQuota::new(self.config.max_output_bytes, layout.output_used),
            capture,
            sink,
            job_id: spec.job_id.clone(),
            attempt: spec.attempt,
            input_json: spec.input_json.clone(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::JobHttpHooks { job_id: spec.job_id.clone(), grant: spec.grant.http.clone() },
            transfer: spec.grant.transfer && !spec.grant.mounts.is_empty(),
            containers: spec.grant.containers.clone().filter(|_| spec.grant.mounts.is_empty()).map(|launcher| {
                crate::launch::Containers {
                    launcher,
                    caller: jobhost_model::ContainerCaller {
                        job_id: spec.job_id.clone(),
                        attempt: spec.attempt,
                        work_dir: sandbox.work(),
                        input_dir: layout.input.clone(),
                        cpus: spec.cpus,
                        memory_mb: spec.memory_mb,
                        gpu_devices: spec.gpu_devices.clone(),
                    },
                }
            }),
        };
        // A job shown its own mounts instead of the sandbox has no `/output` to meter.
        if spec.grant.mounts.is_empty() {
            match quota::track_preopen(&mut state, sandbox::OUTPUT) {
                Ok(true) => {}
                Ok(false) => return failed(format!("preparing the sandbox: no {} preopen", sandbox::OUTPUT)),
                Err(e) => return failed(format!("preparing the sandbox: {}", root_message(&e))),
            }
        }
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);

        let result: wasmtime::Result<Result<(), String>> = match &*prepared {
            Prepared::Command(pre) => match pre.instantiate_async(&mut store).await {
                Ok(cmd) => cmd.wasi_cli_run().call_run(&mut store).await.map(|r| r.map_err(|()| String::new())),
                Err(e) => Err(e),
            },
            Prepared::Plugin(pre) => match pre.instantiate_async(&mut store).await {
                Ok(job) => job.call_run(&mut store).await,
                Err(e) => Err(e),
            },
        };
        let limit_hit = store.data().limits.hit.clone();
        let mut ended = self.ended(result, limit_hit);
        // A refused write under `/output` fails the job whatever the guest did next:
        // its output is cut short. What the guest did is kept after the limit.
        if let Some(refusal) = store.data().output.refusal() {
            let then = ended.error.take();
            ended = Ended::new(JobStatus::Failed, ended.exit_code, Some(refusal));
            if let Some(then) = then {
                ended.note(&format!("then: {then}"));
            }
        }
        ended
    }

    /// How a run ended, from the guest's result and the memory or table limit it hit.
    fn ended(&self, result: wasmtime::Result<Result<(), String>>, limit_hit: Option<String>) -> Ended {
        match result {
            Ok(Ok(())) => Ended::new(JobStatus::Completed, Some(0), None),
            // A command's `exit(1)` (std maps every failure exit to it) carries no message.
            Ok(Err(msg)) if msg.is_empty() => Ended::new(JobStatus::Failed, Some(1), Some("exited with code 1".into())),
            // A plugin's error: its first line is the message, the lines after it the
            // chain of causes (see the SDK's `Error::to_job_error`).
            Ok(Err(msg)) => {
                let (first, causes) = msg.split_once('\n').unwrap_or((&msg, ""));
                let mut ended = Ended::new(JobStatus::Failed, Some(1), Some(first.to_owned()));
                ended.detail = (!causes.trim().is_empty()).then(|| causes.to_owned());
                ended
            }
            Err(e) => {
                // The engine's whole account: the error chain and the guest's backtrace.
                let detail = Some(format!("{e:?}"));
                let failed =
                    |msg: String| Ended { detail: detail.clone(), ..Ended::new(JobStatus::Failed, None, Some(msg)) };
                if let Some(exit) = e.downcast_ref::<I32Exit>() {
                    let code = exit.0;
                    return if code == 0 {
                        Ended::new(JobStatus::Completed, Some(0), None)
                    } else {
                        Ended::new(JobStatus::Failed, Some(code), Some(format!("exited with code {code}")))
                    };
                }
                if let Some(hit) = limit_hit {
                    return failed(hit);
                }
                if let Some(wasmtime::component::ResourceTableError::Full) =
                    e.downcast_ref::<wasmtime::component::ResourceTableError>()
                {
                    return failed(format!(
                        "open resources limit of {} reached (files, streams and other handles held at once)",
                        self.config.max_open_resources
                    ));
                }
                match e.downcast_ref::<Trap>() {
                    Some(Trap::StackOverflow) => failed(format!(
                        "the component trapped: stack limit of {} KiB exhausted",
                        self.config.max_wasm_stack / 1024
                    )),
                    Some(trap) => failed(format!("the component trapped: {trap}")),
                    None => failed(format!("the component failed: {}", root_message(&e))),
                }
            }
        }
    }
}

/// Resolves with the size of `dir` once it exceeds `limit` bytes.
async fn watch_output(dir: PathBuf, limit: u64) -> u64 {
    // The first measure is one period in: at the start there is nothing to measure,
    // and a walk of the tree per job start is a cost every short job would pay.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + OUTPUT_CHECK_INTERVAL, OUTPUT_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let d = dir.clone();
        let size = tokio::task::spawn_blocking(move || sandbox::tree_size(&d)).await.unwrap_or(0);
        if size > limit {
            return size;
        }
    }
}

/// The end of a run before artifacts are attached.
struct Ended {
    status: JobStatus,
    exit_code: Option<i32>,
    error: Option<String>,
    detail: Option<String>,
}

impl Ended {
    fn new(status: JobStatus, exit_code: Option<i32>, error: Option<String>) -> Ended {
        Ended { status, exit_code, error, detail: None }
    }

    fn note(&mut self, text: &str) {
        self.error = Some(match self.error.take() {
            Some(e) => format!("{e}; {text}"),
            None => text.to_owned(),
        });
    }
}
