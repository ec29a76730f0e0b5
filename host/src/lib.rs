//! jobhost: a job host that runs every job as a sandboxed WebAssembly component.
//!
//! # Layout
//!
//! Data flows one way (see `DESIGN.md`):
//!
//! ```text
//! cli/, mcp/ ──> client/ ══ HTTP/WS ══> rpc/ ──> jobs/, plugins/ ──> store/
//!                                           ^
//!                                     scheduler/ ──> runtime/ ── events ──> jobs/
//! ```
//!
//! - [`store`]: all SQL (SQLite today), migrations, the database's settings.
//! - [`jobs`]: the domain — job records, statuses, validation, events.
//! - [`plugins`]: installed components.
//! - [`uploads`]: files sent in for jobs; [`auth`]: users and API tokens.
//! - [`models`]: model pulls from a Hugging Face compatible hub and the local cache.
//! - [`runtime`]: wasmtime, the component cache, sandboxes, the host side of `wit/`.
//! - [`scheduler`]: claims pending jobs and runs them.
//! - [`rpc`]: the JSON-RPC server; [`client`]: the typed client of it.
//! - [`server`]: wires the above into a running server.
//! - [`cli`]: the `jobhost` command; [`mcp`]: the MCP server (`jobhost mcp`), a client
//!   like the CLI.

pub mod auth;
pub mod cli;
pub mod client;
pub mod ids;
pub mod jobs;
pub mod mcp;
pub mod models;
pub mod plugins;
pub mod rpc;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod uploads;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
