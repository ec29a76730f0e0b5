//! The `jobhost` command: the terminal front door ([`cli`]) and the MCP server
//! ([`mcp`]). Both are clients of the JSON-RPC API, through `jobhost-client`, like
//! every editor and agent; `jobhost serve` (and `run` without a server) start the
//! server of `jobhost-server` in this process.

pub mod cli;
pub mod mcp;
pub mod telemetry;
