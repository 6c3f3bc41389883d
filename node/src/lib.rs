//! The `dispatch` binary's library: roles, HTTP API, CLI. Kept as a library so
//! tests and simulations can run the real orchestrator in-process.

/// The domain and the cluster as the node wires them; simulations and load
/// generators reach them through here (`sim → node`, `benches → node`).
pub use actors;
pub use cluster;

pub mod api;
pub mod auth;
pub mod backup;
pub mod capabilities;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster_edge;
pub mod config;
pub mod console;
pub mod credentials;
pub mod datadir;
pub mod dispatch;
pub mod dto;
pub mod http;
pub mod lanes;
pub mod mcp;
pub mod memory;
pub mod outbound;
pub mod protocol;
pub mod sandbox;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod worker;
