//! Host side of `jobhost:plugin/executor`: a component granted `containers` runs a
//! container through the launcher its grant carries (the container executor), over
//! the job's own `/work` and `/input`, its output captured into the job's log like the
//! guest's own stdout and stderr. Without the grant every call answers `denied`.
//!
//! The call is async: the guest waits, its deadline and cancel still apply, and when
//! they end the run the call's future is dropped, which stops the container.

use crate::host::jobhost::plugin::executor::{ContainerSpec, ExecutorError, Host};
use crate::state::JobState;
use jobhost_model::{ContainerCaller, ContainerLauncher, ContainerOutput, ContainerRequest, LaunchError};
use std::sync::Arc;

/// What a job granted `containers` starts them with.
#[derive(Debug, Clone)]
pub(crate) struct Containers {
    pub(crate) launcher: Arc<dyn ContainerLauncher>,
    pub(crate) caller: ContainerCaller,
}

impl Host for JobState {
    async fn run_container(&mut self, spec: ContainerSpec) -> wasmtime::Result<Result<i32, ExecutorError>> {
        let Some(containers) = &self.containers else { return Ok(Err(ExecutorError::Denied)) };
        if let Some(bad) = spec_error(&spec) {
            return Ok(Err(ExecutorError::Failed(bad)));
        }
        let request = ContainerRequest {
            image: spec.image,
            command: spec.command,
            entrypoint: spec.entrypoint,
            workdir: spec.workdir,
            env: spec.env,
            timeout_s: spec.timeout_s,
        };
        let capture = self.capture.clone();
        let output: ContainerOutput = Arc::new(move |stream, bytes| capture.write(stream, bytes));
        tracing::info!(job_id = %containers.caller.job_id, image = %request.image, "a component starts a container");
        Ok(match containers.launcher.launch(containers.caller.clone(), request, output).await {
            Ok(code) => Ok(code),
            Err(LaunchError::Unavailable(why)) => Err(ExecutorError::Unavailable(why)),
            Err(LaunchError::Failed(why)) => Err(ExecutorError::Failed(why)),
        })
    }
}

/// Why `spec` cannot describe a container, if it cannot (checked as a container
/// job's request is).
fn spec_error(spec: &ContainerSpec) -> Option<String> {
    let image = &spec.image;
    if image.is_empty() || image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("image: must be 1 to 255 characters without spaces".into());
    }
    if let Some(dir) = &spec.workdir
        && !dir.starts_with('/')
    {
        return Some("workdir: must be an absolute path".into());
    }
    let words = spec.command.iter().chain(spec.entrypoint.iter().flatten());
    if words.chain(&spec.workdir).any(|w| w.contains('\0')) {
        return Some("command, entrypoint and workdir must not contain NUL".into());
    }
    if spec.env.iter().any(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0')) {
        return Some("env: a name must be non-empty without '=' or NUL, a value without NUL".into());
    }
    None
}
