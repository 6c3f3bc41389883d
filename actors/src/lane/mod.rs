//! Agent lanes and their handoffs to people.
//!
//! `lifecycle.rs` holds the rules (decide/apply); `entity.rs` plugs them into the
//! kernel; `store.rs` the indexes (handoffs by queue, timers, callback outbox).

mod entity;
pub mod freeze;
pub mod lifecycle;
mod model;
pub mod store;
mod upgrade;

pub use entity::{LaneDeps, LaneHandle, Lanes, start};
pub use lifecycle::{
    Checkpoint, Decision, DecisionAction, Handoff, HandoffRequest, HandoffStatus, Lane, LaneCommand, LaneError,
    LaneEvent, LaneStatus, TimeoutAction, handoff_due,
};
