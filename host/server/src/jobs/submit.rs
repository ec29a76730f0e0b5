//! Submitting a job: [`Jobs::submit`] checks a request against the installed plugin,
//! the upload it names and the [`Limits`](super::Limits) (an error names the offending
//! field), queues its insert and wakes the scheduler before the commit, so the claim can
//! share the insert's transaction. Idempotency is the store's: a `client_job_id`
//! naming a live job of the caller returns that job, decided by a unique index so
//! concurrent duplicates still make one job; the upload a job consumes is taken in the
//! same insert, and when that fails the caller is told why in their own terms.

use super::{Caller, Error, Jobs, Result, SubmitRequest, Submitted};
use jobhost_model::{ContainerSpec, Cpus, JobKind, UploadState, ids};
use jobhost_store::NewJob;
use serde::Serialize;
use std::sync::PoisonError;

/// A container job's spec from `req`: the image named, a plain working directory.
fn container_spec(req: &SubmitRequest, image: &str) -> Result<ContainerSpec> {
    if !req.plugin.is_empty() {
        return Err(Error::invalid("plugin", "a job runs a component or an image, not both"));
    }
    if !req.args.is_empty() {
        return Err(Error::invalid("args", "a container job takes `command`"));
    }
    if image.is_empty() || image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid("image", "must be 1 to 255 characters without spaces"));
    }
    if let Some(dir) = &req.workdir
        && (!dir.starts_with('/') || dir.contains('\0'))
    {
        return Err(Error::invalid("workdir", "must be an absolute path"));
    }
    for (i, word) in req.entrypoint.iter().flatten().enumerate() {
        if word.contains('\0') {
            return Err(Error::invalid(&format!("entrypoint[{i}]"), "must not contain NUL"));
        }
    }
    Ok(ContainerSpec { image: image.to_owned(), entrypoint: req.entrypoint.clone(), workdir: req.workdir.clone() })
}

/// Bytes of JSON in `args`, `env`, `input` and `labels` together; jobs carry data in
/// files, not in their record.
const MAX_REQUEST_JSON_BYTES: usize = 1 << 20;

impl Jobs {
    /// Validates and records a job. With a `client_job_id` already naming a live job
    /// of the caller, returns that job with `created: false`.
    pub async fn submit(&self, caller: &Caller, req: SubmitRequest) -> Result<Submitted> {
        let kind = if req.image.is_some() { JobKind::Container } else { JobKind::Wasm };
        self.submit_kind(caller, req, kind).await
    }

    /// [`Jobs::submit`] for a job of another `kind` (e.g. `pull`, submitted by the
    /// models service), which decides what the scheduler grants the run.
    pub async fn submit_kind(&self, caller: &Caller, req: SubmitRequest, kind: JobKind) -> Result<Submitted> {
        self.submit_new(caller, req, kind, None).await
    }

    /// [`Jobs::submit_kind`] for task `task` (run, step, index) of a workflow run.
    pub async fn submit_task(
        &self,
        caller: &Caller,
        req: SubmitRequest,
        kind: JobKind,
        task: (String, String, u32),
    ) -> Result<Submitted> {
        self.submit_new(caller, req, kind, Some(task)).await
    }

    async fn submit_new(
        &self,
        caller: &Caller,
        req: SubmitRequest,
        kind: JobKind,
        task: Option<(String, String, u32)>,
    ) -> Result<Submitted> {
        let mut new = self.validate(caller, req, kind).await?;
        new.task = task;
        if let Some(traces) = &self.traces {
            traces.submitting(&new.id, &new.plugin, kind.as_str());
        }
        let inserted = self.store.insert_job(&new);
        // Claim now rather than after the commit: queued behind the insert, the claim
        // shares its transaction (it sees the job).
        let hook = self.submit_hook.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if !hook.is_some_and(|hook| hook()) {
            self.work.notify_one();
        }
        let inserted = inserted.await;
        if let Some(traces) = &self.traces {
            match &inserted {
                Ok(Some((_, true))) => traces.submitted(&new.id),
                _ => traces.not_submitted(&new.id),
            }
        }
        let Some((job, created)) = inserted? else {
            return Err(self.unusable_upload(caller, new.files_id.as_deref().unwrap_or_default()).await);
        };
        if job.run_at.is_some() {
            self.held_changed();
        }
        Ok(Submitted { job, created })
    }

    async fn validate(&self, caller: &Caller, req: SubmitRequest, kind: JobKind) -> Result<NewJob> {
        let limits = &self.limits;
        let mut grants = Vec::new();
        // What runs: an installed component's name and digest, or an image.
        let (plugin, digest, args, container) = match (&req.image, kind) {
            (Some(image), JobKind::Container) => {
                let spec = container_spec(&req, image)?;
                if !self.limits.containers {
                    return Err(Error::Unavailable(
                        "this server runs no containers: no container engine answered at its start".into(),
                    ));
                }
                (image.clone(), String::new(), req.command.clone(), Some(spec))
            }
            (Some(_), _) => return Err(Error::invalid("image", "a job of this kind runs a component")),
            (None, _) => {
                if req.plugin.is_empty() {
                    return Err(Error::invalid("plugin", "must not be empty (or give `image` for a container)"));
                }
                for (field, set) in [
                    ("command", !req.command.is_empty()),
                    ("entrypoint", req.entrypoint.is_some()),
                    ("workdir", req.workdir.is_some()),
                ] {
                    if set {
                        return Err(Error::invalid(field, "is for a container job (with `image`)"));
                    }
                }
                let plugin = self
                    .store
                    .get_plugin(&req.plugin)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("plugin {:?} is not installed", req.plugin)))?;
                grants = plugin.grants;
                (plugin.name, plugin.digest, req.args.clone(), None)
            }
        };
        let (gpus, gpu_type) = self.gpu_request(&req).await?;
        let max_attempts = match req.max_attempts {
            None => limits.max_attempts,
            Some(n) if (1..=MAX_ATTEMPTS).contains(&n) => n,
            Some(_) => return Err(Error::invalid("max_attempts", format!("must be between 1 and {MAX_ATTEMPTS}"))),
        };
        if let Some(retry) = &req.retry {
            if retry.backoff_s > MAX_BACKOFF_S || retry.max_backoff_s > MAX_BACKOFF_S {
                return Err(Error::invalid("retry", format!("backoffs are at most {MAX_BACKOFF_S} s (a day)")));
            }
            if retry.max_backoff_s < retry.backoff_s {
                return Err(Error::invalid("retry.max_backoff_s", "must be at least backoff_s"));
            }
        }
        let run_at = hold_until(req.run_at.as_deref(), req.delay_s)?;
        if let Some(files_id) = &req.files_id {
            let upload =
                if ids::has_prefix(files_id, ids::UPLOAD) { self.store.get_upload(files_id).await? } else { None };
            if upload.is_none_or(|u| u.user_id != caller.user_id) {
                return Err(Error::NotFound(format!("upload {files_id:?} not found")));
            }
        }
        let args_field = if container.is_some() { "command" } else { "args" };
        for (i, a) in args.iter().enumerate() {
            if a.contains('\0') {
                return Err(Error::invalid(&format!("{args_field}[{i}]"), "must not contain NUL"));
            }
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(Error::invalid(&format!("env.{k}"), "a name must be non-empty without '=' or NUL"));
            }
            if v.contains('\0') {
                return Err(Error::invalid(&format!("env.{k}"), "must not contain NUL"));
            }
        }
        let memory_mb = req.memory_mb.unwrap_or(limits.default_memory_mb);
        if memory_mb == 0 || memory_mb > limits.max_memory_mb {
            return Err(Error::invalid(
                "memory_mb",
                format!("must be between 1 and {} (the server's maximum)", limits.max_memory_mb),
            ));
        }
        let timeout_s = req.timeout_s.unwrap_or(limits.default_timeout_s);
        if timeout_s == 0 || timeout_s > limits.max_timeout_s {
            return Err(Error::invalid(
                "timeout_s",
                format!("must be between 1 and {} (the server's maximum)", limits.max_timeout_s),
            ));
        }
        let cpus = req.cpus.unwrap_or(limits.default_cpus);
        if cpus.millis() == 0 {
            return Err(Error::invalid("cpus", "must be more than 0"));
        }
        if cpus > Cpus::whole(limits.capacity_cpus) {
            return Err(Error::LimitExceeded(format!(
                "cpus: the job asks for {cpus} CPUs but this server has {}; it could never start",
                limits.capacity_cpus
            )));
        }
        if memory_mb > limits.capacity_memory_mb {
            return Err(Error::LimitExceeded(format!(
                "memory_mb: the job asks for {memory_mb} MiB but this server runs jobs in {} MiB; \
                 it could never start",
                limits.capacity_memory_mb
            )));
        }
        if let Some(key) = &req.client_job_id
            && (key.is_empty() || key.len() > 200)
        {
            return Err(Error::invalid("client_job_id", "must be 1 to 200 characters"));
        }
        if req.requires.len() > jobhost_model::MAX_REQUIRES {
            return Err(Error::invalid(
                "requires",
                format!("at most {} labels, not {}", jobhost_model::MAX_REQUIRES, req.requires.len()),
            ));
        }
        if let Some((i, bad)) =
            req.requires.iter().enumerate().find_map(|(i, l)| Some((i, jobhost_model::label_error(l)?)))
        {
            return Err(Error::invalid(&format!("requires[{i}]"), bad));
        }
        let mut requires = req.requires.clone();
        requires.sort();
        requires.dedup();
        let args = to_json(&args);
        let env = to_json(&req.env);
        let labels = to_json(&req.labels);
        let input = req.input.as_ref().map(|v| v.to_string());
        let size = args.len() + env.len() + labels.len() + input.as_ref().map_or(0, String::len);
        if size > MAX_REQUEST_JSON_BYTES {
            return Err(Error::LimitExceeded(format!(
                "args, env, input and labels take {size} bytes; the limit is {MAX_REQUEST_JSON_BYTES} \
                 (pass large data as files)"
            )));
        }
        Ok(NewJob {
            id: ids::new(ids::JOB),
            user_id: caller.user_id.clone(),
            kind,
            plugin,
            plugin_digest: digest,
            args,
            env,
            input,
            labels,
            priority: req.priority.unwrap_or(0),
            cpus,
            memory_mb,
            timeout_s,
            client_job_id: req.client_job_id,
            requires,
            files_id: req.files_id,
            container: container.map(|c| to_json(&c)),
            gpus,
            gpu_type,
            grants,
            max_attempts,
            run_at,
            retry: req.retry.map(|r| to_json(&r)),
            task: None,
        })
    }

    /// The GPUs `req` asks for, checked: a type only with a count, and no more than
    /// some node has (of that type): a job no node could ever run is refused now.
    async fn gpu_request(&self, req: &SubmitRequest) -> Result<(u32, Option<String>)> {
        let gpus = req.gpus.unwrap_or(0);
        if let Some(t) = &req.gpu_type {
            if gpus == 0 {
                return Err(Error::invalid("gpu_type", "is for a job that asks for `gpus`"));
            }
            if let Some(bad) = jobhost_model::gpu_type_error(t) {
                return Err(Error::invalid("gpu_type", bad));
            }
        }
        if gpus == 0 {
            return Ok((0, None));
        }
        if gpus > jobhost_model::MAX_GPUS {
            return Err(Error::invalid("gpus", format!("at most {}", jobhost_model::MAX_GPUS)));
        }
        let now = chrono::Utc::now();
        let most = self
            .store
            .list_workers()
            .await?
            .into_iter()
            .map(|w| w.seen_within(now))
            .filter(|w| w.status != jobhost_model::WorkerStatus::Offline && w.concurrency > 0)
            .map(|w| w.gpus.iter().filter(|g| req.gpu_type.as_ref().is_none_or(|t| &g.gpu_type == t)).count())
            .max()
            .unwrap_or(0);
        if usize::try_from(gpus).unwrap_or(usize::MAX) > most {
            let of = req.gpu_type.as_ref().map(|t| format!(" of type {t}")).unwrap_or_default();
            return Err(Error::LimitExceeded(format!(
                "gpus: the job asks for {gpus} GPUs{of} but the most any online node has is {most}; \
                 it could never start"
            )));
        }
        Ok((gpus, req.gpu_type.clone()))
    }

    /// Why the upload `id` could not be consumed, in the caller's terms.
    async fn unusable_upload(&self, caller: &Caller, id: &str) -> Error {
        match self.store.get_upload(id).await {
            Ok(Some(u)) if caller.is_admin || u.user_id == caller.user_id => match u.state {
                UploadState::Open => Error::Conflict(format!("upload {id} is not finalized yet")),
                UploadState::Finalized => Error::Conflict(format!("upload {id} has expired")),
                UploadState::Consumed => Error::Conflict(format!(
                    "upload {id} was already consumed by job {}",
                    u.job_id.as_deref().unwrap_or("(cleaned)")
                )),
                UploadState::Expired => Error::Conflict(format!("upload {id} has expired")),
            },
            Ok(_) => Error::NotFound(format!("upload {id:?} not found")),
            Err(e) => e.into(),
        }
    }
}

/// Most attempts a job may ask for.
const MAX_ATTEMPTS: u32 = 100;
/// The longest retry backoff, seconds.
const MAX_BACKOFF_S: u32 = 24 * 3600;
/// The furthest a job may be held, seconds.
const MAX_HOLD_S: i64 = 366 * 24 * 3600;

/// When a job asking for `run_at` or `delay_s` may first be claimed, written as the
/// store compares times; none for a time already past (it runs at once).
fn hold_until(run_at: Option<&str>, delay_s: Option<u32>) -> Result<Option<String>> {
    let now = chrono::Utc::now();
    let at = match (run_at, delay_s) {
        (Some(_), Some(_)) => return Err(Error::invalid("delay_s", "give run_at or delay_s, not both")),
        (None, None) => return Ok(None),
        (None, Some(s)) => now + chrono::Duration::seconds(i64::from(s)),
        (Some(text), None) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| Error::invalid("run_at", format!("is not an RFC 3339 time: {e}")))?
            .to_utc(),
    };
    let field = if delay_s.is_some() { "delay_s" } else { "run_at" };
    if (at - now).num_seconds() > MAX_HOLD_S {
        return Err(Error::invalid(field, "is more than a year away"));
    }
    Ok((at > now).then(|| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// Serializing our own vectors and string maps to JSON cannot fail; this keeps the
/// `unwrap`-free rule without an error path that can never be taken.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
