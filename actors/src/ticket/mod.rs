//! Tickets: field-service work orders with a strict lifecycle.
//!
//! `lifecycle.rs` holds the whole rule set (read it top to bottom); `closeout.rs` the
//! evidence/checklist gate; `actor.rs` and `supervisor.rs` the ractor shell that
//! sequences the rules with the log; `store.rs` how tickets map onto log streams.

mod actor;
pub mod closeout;
mod lifecycle;
pub mod store;
mod supervisor;

pub use actor::{CommandError, CommandMeta, CommandOutcome, TicketRequest};
pub use closeout::{CloseoutStatus, IncidentTemplate, Templates, TemplatesError};
pub use lifecycle::*;
pub use supervisor::{SupervisorConfig, SupervisorMsg, TicketDeps, TicketSupervisor};
