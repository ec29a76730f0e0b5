//! The leaf of jobhost: the domain's records and the wire types that the server and
//! its clients share. It depends on no other jobhost crate (and on serde, schemars,
//! chrono and uuid only), so a client, a store backend or an executor can speak of
//! jobs without linking the server.
//!
//! # Layout
//!
//! - [`ids`]: prefixed, time-ordered identifiers and the stored timestamp form.
//! - `job`: jobs and their statuses, kinds, logs, progress, artifacts, plugins, events.
//! - `access`: callers, users, tokens and scopes.
//! - `upload`: uploads.
//! - `workflow`: workflows (DAGs of steps), runs and their tasks.
//! - `gpu`: GPUs of a node, their use, and how a job's devices are chosen.
//! - `api`: request and result types of the JSON-RPC methods.
//! - `error`: the domain [`Error`], which owns its JSON-RPC codes and HTTP statuses.
//! - `grant`, `outcome`, `sink`: what an executor is handed and what it hands back.

pub mod ids;

mod access;
mod api;
mod error;
mod gpu;
mod grant;
mod job;
mod outcome;
mod sink;
mod upload;
mod worker;
mod workflow;

pub use access::*;
pub use api::*;
pub use error::*;
pub use gpu::*;
pub use grant::*;
pub use job::*;
pub use outcome::*;
pub use sink::*;
pub use upload::*;
pub use worker::*;
pub use workflow::*;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
