//! The jobhost server: the services of the domain, the scheduler that runs their jobs,
//! the JSON-RPC server in front of them, and the wiring that starts it all.
//!
//! # Layout
//!
//! ```text
//! rpc/ ──> jobs/, plugins/, uploads/, auth/, models/ ──> jobhost-store (dyn Store)
//!            ^
//!      scheduler/ ──> jobhost-executors (dyn Executor) ── sink ──> jobs/ (Recorder)
//! ```
//!
//! - [`jobs`]: the domain — validation, idempotency, transitions, queries, events.
//! - [`plugins`]: installed components; [`uploads`]: files sent in for jobs;
//!   [`auth`]: users and API tokens; [`models`]: model pulls and the local cache.
//! - [`scheduler`]: claims pending jobs, grants each its kind's [`scheduler::Grants`]
//!   and runs it on its kind's executor; sweepers.
//! - [`nodes`]: this process as one node of several on a database; [`cluster`]: files
//!   held by other nodes.
//! - [`rpc`]: the JSON-RPC server (the only module that speaks jsonrpsee).
//! - [`start`]: wires the above into a running server on a data dir.
//!
//! The services hold the store as `Arc<dyn Store>` and never see SQL; the scheduler
//! knows no job kind's special needs (a kind's service registers its grant).

pub mod auth;
pub mod cluster;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod nodes;
pub mod plugins;
pub mod rpc;
pub mod runs;
pub mod scheduler;
pub mod uploads;
mod wiring;

pub use wiring::{DB_FILE, DatabaseUrl, RunningServer, ServerConfig, start};
