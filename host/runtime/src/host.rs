//! Host side of `wit/job.wit`: the one `bindgen!` of the host, and the implementations
//! of the `jobhost:plugin` interfaces a job's component may import (`transfer`'s are in
//! `transfer.rs`, `executor`'s in `launch.rs`).
//!
//! The bindings are of world `puller`, the widest: it is world `job` plus `wasi:http`
//! and `transfer`, with the same export, so its `PullerPre` classifies components of
//! either world. The WASI interfaces it names are wasmtime-wasi's own (`with`), so the
//! streams and descriptors `transfer` takes are the ones in the job's resource table.

use super::JobState;
use jobhost_model::{LogStream, Progress};
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    world: "puller",
    path: "../../wit",
    imports: {
        default: async,
        "jobhost:plugin/transfer.copy": async | trappable,
        "jobhost:plugin/transfer.[constructor]sha256": async | trappable,
        "jobhost:plugin/transfer.[method]sha256.absorb-file": async | trappable,
        "jobhost:plugin/transfer.[method]sha256.hex-digest": async | trappable,
        "jobhost:plugin/executor.run-container": async | trappable,
    },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "jobhost:plugin/transfer.sha256": super::transfer::Sha256State,
    },
});

/// A component that exports world `job`'s `run` (world `job` or `puller`), ready to
/// instantiate.
pub use self::PullerPre as JobPre;

pub use self::jobhost::plugin::log::Level;

/// Links the `jobhost:plugin` interfaces (WASI is linked by wasmtime-wasi).
pub fn add_to_linker(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    jobhost::plugin::log::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    jobhost::plugin::progress::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    jobhost::plugin::job_input::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    jobhost::plugin::executor::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    jobhost::plugin::transfer::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)
}

impl jobhost::plugin::log::Host for JobState {
    async fn write(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        };
        self.capture.line(LogStream::Log, &format!("{level} {message}"));
    }
}

impl jobhost::plugin::progress::Host for JobState {
    async fn report(&mut self, done: u64, total: Option<u64>, message: Option<String>) {
        self.sink.progress(&self.job_id, Progress { done, total, message });
    }
}

impl jobhost::plugin::job_input::Host for JobState {
    async fn input_json(&mut self) -> String {
        self.input_json.clone()
    }

    async fn job_id(&mut self) -> String {
        self.job_id.clone()
    }

    async fn attempt(&mut self) -> u32 {
        self.attempt
    }
}
