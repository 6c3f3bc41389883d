//! Worker nodes as the orchestrator sees them: their lifecycle (pure rules), the
//! bootstrap tokens they join with, and the actors that keep both in the log.

mod entity;
pub mod lifecycle;
pub mod membership;
mod node_actor;
pub mod token;
mod view;

pub use entity::{JoinTokens, Nodes};
pub use lifecycle::{
    Capabilities, ConfigAck, ConfigOutcome, Node, NodeCert, NodeCommand, NodeConfig, NodeError, NodeEvent, NodeState,
};
pub use membership::{Joined, Membership, MembershipConfig, MembershipError, NodeHandle, NodeView, Origin};
pub use token::{JoinToken, TokenCommand, TokenRefusal};
