//! Agent lanes and their handoffs to people.

pub mod lifecycle;

pub use lifecycle::{
    Checkpoint, Decision, DecisionAction, Handoff, HandoffRequest, HandoffStatus, Lane, LaneCommand, LaneError, LaneEvent,
    LaneStatus, TimeoutAction,
};
