//! The kernel: the one command path every entity runs on (DESIGN.md §4).
//!
//! An entity (ticket, lane, ...) implements [`Entity`]: pure `decide`/`apply`, its
//! stream and the indexes its events imply. [`Entities`] starts one supervisor per
//! kind; the supervisor wakes one [`actor`] per live id; the actor runs each command
//! through [`execute`]: decide → durable append (the idempotency key checked inside
//! the commit; retried on a sequence conflict) → apply → [`Outcome`]. The edges
//! (HTTP, MCP, QUIC) map outcomes and failures to their own formats. Time and ids come from the injected [`Clock`]
//! and [`Ids`].

mod actor;
pub mod clock;
mod command;
mod entity;
mod messages;
mod origin;
mod supervisor;

pub use clock::{Clock, Ids, ManualClock, RandomIds, SeededIds, SystemClock};
pub use command::{Failure, Kernel, LoadError, Loaded, Outcome, Request, execute, load, load_at, run_once};
pub use entity::{At, Context, Entity};
pub use messages::{EntityMsg, SupervisorMsg};
pub use origin::Origin;
pub use supervisor::{Entities, SupervisorConfig};

#[cfg(test)]
mod tests;
