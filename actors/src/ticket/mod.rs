//! Tickets: field-service work orders with a strict lifecycle.
//!
//! `model.rs` says what a ticket is; `rules.rs` holds the whole rule set (decide and
//! apply, read it top to bottom); `closeout.rs` the evidence/checklist gate;
//! `entity.rs` plugs them into the kernel (which runs every command); `store.rs` how
//! tickets map onto log streams and indexes.

pub mod closeout;
mod entity;
mod model;
mod rules;
pub mod sla;
pub mod store;

pub use closeout::{CloseoutStatus, IncidentTemplate, Templates, TemplatesError};
pub use entity::{TicketDeps, Tickets};
pub use model::*;
pub use rules::{DecideContext, apply, decide};

#[cfg(test)]
#[path = "entity_tests.rs"]
mod tests;
