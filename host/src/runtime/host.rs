//! Host side of world `job` (`wit/job.wit`): the one `bindgen!` of the host, and the
//! implementations of the interfaces a job's component may import.

use super::JobState;
use crate::jobs::model::{LogStream, Progress};

wasmtime::component::bindgen!({
    world: "job",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use self::jobhost::plugin::log::Level;

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
}
