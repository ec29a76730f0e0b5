//! `hello`: the smallest useful jobhost plugin.
//!
//! Input (optional): `{"name": "..."}`; without it, or without `name`, greets "world".
//! Logs `hello, <name>` at info, reports progress 1/1 and writes `/output/hello.txt`
//! containing `hello, <name>\n`.

use std::path::Path;

use jobhost_sdk::{Context, Error, Job, OUTPUT_DIR, log, progress};
use serde::Deserialize;

/// The job's input; `#[serde(default)]` lets `{}` and a missing `name` fall back too.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Input {
    name: String,
}

impl Default for Input {
    fn default() -> Self {
        Input { name: "world".to_owned() }
    }
}

fn hello(job: Job) -> Result<(), Error> {
    let input: Input = job.input_or_default()?;
    let greeting = format!("hello, {}", input.name);
    log::info(&greeting);

    let path = Path::new(OUTPUT_DIR).join("hello.txt");
    std::fs::write(&path, format!("{greeting}\n")).context(format!("writing {}", path.display()))?;

    progress(1, Some(1), Some(&format!("wrote {}", path.display())));
    Ok(())
}

jobhost_sdk::export_job!(hello);
