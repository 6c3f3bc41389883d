//! What the membership is configured with and answers with, shared by the registry
//! (`membership.rs`) and each node's actor (`node_actor.rs`).

use serde::Serialize;

use super::lifecycle::{Node, NodeCert, NodeConfig, NodeError};
use super::token::TokenRefusal;

/// Why a membership request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Token(#[from] TokenRefusal),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("could not issue the node certificate: {0}")]
    Certificate(String),
    #[error("storage unavailable: {0}")]
    Storage(String),
    #[error("membership unavailable")]
    Unavailable,
}

/// Silence thresholds, in missed heartbeats of the node's own interval.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub unreachable_after_beats: u32,
    pub lost_after_beats: u32,
    /// Configuration a node gets when it joins.
    pub default_config: NodeConfig,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig { unreachable_after_beats: 3, lost_after_beats: 12, default_config: NodeConfig::default() }
    }
}

/// A node and how long ago it was last heard from (None: not since this orchestrator started).
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    pub last_seen_ms_ago: Option<u64>,
}

/// What a successful join returns to the worker.
#[derive(Debug, Clone)]
pub struct Joined {
    pub node_id: String,
    pub cert_der: Vec<u8>,
    pub cert: NodeCert,
    pub config_version: u64,
}

/// Configuration version and contents, as published to the node's connection.
pub type DesiredConfig = (u64, NodeConfig);
