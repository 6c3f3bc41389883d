//! The domain of dispatch: pure rules (`decide`, `apply`) for each kind of entity,
//! the authorization policy they share with the API, and the ractor actors that
//! sequence the rules with the log.

pub mod kernel;
pub mod labels;
pub mod lane;
pub mod node;
pub mod policy;
pub mod session;
pub mod task;
pub mod ticket;
pub mod user;

/// The log the domain persists to, for the node's wiring (so `node` depends on
/// `actors`, not past it).
pub use storage;
