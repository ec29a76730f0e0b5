//! `steps`: a `job`-world plugin for tests of live progress (MCP notifications, the
//! CLI's progress bar). Input `{"steps": N, "interval_ms": M}` (defaults 3 and 500):
//! N times, it sleeps M ms, reports progress `i` of `N` with message `step i of N`
//! and prints `step i` on stdout.

use jobhost_sdk::{Error, Job, progress};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(default)]
struct Input {
    steps: u64,
    interval_ms: u64,
}

impl Default for Input {
    fn default() -> Self {
        Input { steps: 3, interval_ms: 500 }
    }
}

fn steps(job: Job) -> Result<(), Error> {
    let input: Input = job.input_or_default()?;
    for i in 1..=input.steps {
        std::thread::sleep(Duration::from_millis(input.interval_ms));
        progress(i, Some(input.steps), Some(&format!("step {i} of {}", input.steps)));
        println!("step {i}");
    }
    Ok(())
}

jobhost_sdk::export_job!(steps);
