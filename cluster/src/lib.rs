//! The cluster: QUIC with mutual TLS between the orchestrator and its workers.
//!
//! - [`wire`]: length-prefixed, versioned bincode-2 frames with a size limit.
//! - [`proto`]: the messages; one bidirectional stream per request.
//! - [`token`]: bootstrap token strings (signed claims that pin the CA).
//! - [`transport`]: endpoints over any UDP socket, so the simulator can supply one.
//! - [`orchestrator`]: accepts joins and authenticated node connections and hands
//!   each request to the [`orchestrator::Inbound`] handler the node implements.
//!
//! It knows nothing of tickets, tasks or the log: the node maps the protocol's
//! types to its domain, and runs the worker's side (its store and job runner).

pub mod orchestrator;
pub mod proto;
pub mod token;
pub mod transport;
pub mod wire;

/// The certificates the transport is built on, for the node's wiring.
pub use certs;
