//! `container-step`: one CI step in a container, driven by a sandboxed plugin.
//!
//! Install it with the `containers` grant (`jobhost install container-step
//! container_step.wasm --grant containers`). Input:
//!
//! ```json
//! {"image": "builder:1", "command": ["sh", "-c", "make > build.log"],
//!  "env": {"CI": "1"}, "keep": ["build.log"], "timeout_s": 600}
//! ```
//!
//! The plugin runs the command in the image with the job's `/work` as the
//! container's `/work` (so the files the step writes there are the plugin's to read),
//! logs the exit code, copies every file named in `keep` from `/work` to `/output`
//! (artifacts of the job) and fails the job when the step exited non-zero. Without
//! the grant the job fails with "running containers is not granted to this plugin".

use jobhost_sdk::executor::{self, Container};
use jobhost_sdk::{Context, Error, Job, OUTPUT_DIR, WORK_DIR, log, progress};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path};

/// The step to run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Files under `/work` to keep as artifacts once the step ran.
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    timeout_s: Option<u32>,
}

fn step(job: Job) -> Result<(), Error> {
    let step: Step = job.input()?;
    let mut container = Container::new(&step.image).command(&step.command);
    for (name, value) in &step.env {
        container = container.env(name, value);
    }
    if let Some(t) = step.timeout_s {
        container = container.timeout_s(t);
    }
    log::info(format!("running {} {:?}", step.image, step.command));
    let code = executor::run(&container)?;
    log::info(format!("the step exited with {code}"));
    for (i, name) in step.keep.iter().enumerate() {
        let relative = Path::new(name);
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Error::new(format!("keep[{i}]: {name:?} is not a plain relative path")));
        }
        let (from, to) = (Path::new(WORK_DIR).join(relative), Path::new(OUTPUT_DIR).join(relative));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
        }
        std::fs::copy(&from, &to).context(format!("keeping {}", from.display()))?;
        progress(i as u64 + 1, Some(step.keep.len() as u64), Some(name));
    }
    if code != 0 {
        return Err(Error::new(format!("the step exited with code {code}")));
    }
    Ok(())
}

jobhost_sdk::export_job!(step);
