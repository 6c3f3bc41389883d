//! Agent lanes and their handoffs to people.

pub mod actor;
pub mod lifecycle;
pub mod store;

pub use lifecycle::{
    Checkpoint, Decision, DecisionAction, Handoff, HandoffRequest, HandoffStatus, Lane, LaneCommand, LaneError,
    LaneEvent, LaneStatus, TimeoutAction,
};
