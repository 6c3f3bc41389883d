//! Worker nodes and join tokens as the API speaks them.
//! Each type mirrors the domain type of the same name (see `dto/mod.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeState {
    Joining,
    Active,
    Draining,
    Unreachable,
    Lost,
    Removed,
}

/// What a node reports about itself at join and whenever it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Capabilities {
    pub hostname: String,
    pub cores: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub arch: String,
    pub os: String,
    /// Docker Engine version, `None` when no engine answers on the node.
    pub docker_version: Option<String>,
    pub images: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// A local inference runtime is available on the node.
    pub inference: bool,
}

/// The configuration the orchestrator wants a node to run with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeConfig {
    /// How often the node sends a heartbeat.
    pub heartbeat_interval_ms: u64,
    /// Jobs the node runs at once.
    pub max_concurrent_jobs: u32,
    /// Image used for jobs that name none.
    pub sandbox_image: String,
    /// Network policies jobs on this node may ask for (`none`, `restricted`).
    pub allowed_network_policies: Vec<String>,
    /// Memory limit of a job that names none.
    pub default_memory_bytes: u64,
    /// CPU quota of a job that names none, in thousandths of a core.
    pub default_cpu_millis: u32,
    /// Labels the orchestrator attaches to the node (placement constraints).
    pub labels: BTreeMap<String, String>,
}

/// How a node answered a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigOutcome {
    Applied,
    Failed(ConfigFailure),
}

/// Why a node could not apply a configuration. (A named type, not an inline
/// variant, so client generators give it one name.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigFailure {
    pub error: String,
}

/// A node's acknowledgement of one configuration version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigAck {
    pub version: u64,
    pub outcome: ConfigOutcome,
}

/// A certificate issued to the node, known by its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeCert {
    pub fingerprint: String,
    pub not_after_ms: i64,
    /// A newer certificate has been used to connect: this one opens nothing any more.
    #[serde(default)]
    pub retired: bool,
}

/// A worker node as the orchestrator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub state: NodeState,
    /// Drain was asked for; a draining node that drops off comes back DRAINING.
    pub draining: bool,
    pub capabilities: Capabilities,
    /// The bootstrap token the node joined with, and its labels.
    pub token_id: String,
    pub token_labels: BTreeMap<String, String>,
    /// SHA-256 of the public key the node joined with: a retried join (same token,
    /// same key) finds this node again instead of creating another.
    pub key_sha256: String,
    pub certs: Vec<NodeCert>,
    pub config_version: u64,
    pub config: NodeConfig,
    /// The node's last acknowledgement, if any.
    pub config_ack: Option<ConfigAck>,
    pub joined_ms: i64,
    pub updated_ms: i64,
}

/// A bootstrap token's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinToken {
    pub id: String,
    /// Labels given to every node that joins with this token.
    pub labels: BTreeMap<String, String>,
    pub uses_allowed: u32,
    pub uses: u32,
    pub expires_ms: i64,
    pub revoked: bool,
    pub created_ms: i64,
    pub created_by: String,
    /// Nodes that joined with it.
    pub nodes: Vec<String>,
}

/// A node and how long ago it was last heard from (None: not since this orchestrator started).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    pub last_seen_ms_ago: Option<u64>,
}

// ------------------------------------------------------------- to and from the domain

impl From<actors::node::NodeState> for NodeState {
    fn from(v: actors::node::NodeState) -> Self {
        match v {
            actors::node::NodeState::Joining => NodeState::Joining,
            actors::node::NodeState::Active => NodeState::Active,
            actors::node::NodeState::Draining => NodeState::Draining,
            actors::node::NodeState::Unreachable => NodeState::Unreachable,
            actors::node::NodeState::Lost => NodeState::Lost,
            actors::node::NodeState::Removed => NodeState::Removed,
        }
    }
}

impl From<NodeState> for actors::node::NodeState {
    fn from(v: NodeState) -> Self {
        match v {
            NodeState::Joining => actors::node::NodeState::Joining,
            NodeState::Active => actors::node::NodeState::Active,
            NodeState::Draining => actors::node::NodeState::Draining,
            NodeState::Unreachable => actors::node::NodeState::Unreachable,
            NodeState::Lost => actors::node::NodeState::Lost,
            NodeState::Removed => actors::node::NodeState::Removed,
        }
    }
}

impl From<actors::node::Capabilities> for Capabilities {
    fn from(v: actors::node::Capabilities) -> Self {
        let actors::node::Capabilities {
            hostname,
            cores,
            memory_bytes,
            disk_bytes,
            arch,
            os,
            docker_version,
            images,
            labels,
            inference,
        } = v;
        Capabilities { hostname, cores, memory_bytes, disk_bytes, arch, os, docker_version, images, labels, inference }
    }
}

impl From<Capabilities> for actors::node::Capabilities {
    fn from(v: Capabilities) -> Self {
        let Capabilities {
            hostname,
            cores,
            memory_bytes,
            disk_bytes,
            arch,
            os,
            docker_version,
            images,
            labels,
            inference,
        } = v;
        actors::node::Capabilities {
            hostname,
            cores,
            memory_bytes,
            disk_bytes,
            arch,
            os,
            docker_version,
            images,
            labels,
            inference,
        }
    }
}

impl From<actors::node::NodeConfig> for NodeConfig {
    fn from(v: actors::node::NodeConfig) -> Self {
        let actors::node::NodeConfig {
            heartbeat_interval_ms,
            max_concurrent_jobs,
            sandbox_image,
            allowed_network_policies,
            default_memory_bytes,
            default_cpu_millis,
            labels,
        } = v;
        NodeConfig {
            heartbeat_interval_ms,
            max_concurrent_jobs,
            sandbox_image,
            allowed_network_policies,
            default_memory_bytes,
            default_cpu_millis,
            labels,
        }
    }
}

impl From<NodeConfig> for actors::node::NodeConfig {
    fn from(v: NodeConfig) -> Self {
        let NodeConfig {
            heartbeat_interval_ms,
            max_concurrent_jobs,
            sandbox_image,
            allowed_network_policies,
            default_memory_bytes,
            default_cpu_millis,
            labels,
        } = v;
        actors::node::NodeConfig {
            heartbeat_interval_ms,
            max_concurrent_jobs,
            sandbox_image,
            allowed_network_policies,
            default_memory_bytes,
            default_cpu_millis,
            labels,
        }
    }
}

impl From<actors::node::ConfigOutcome> for ConfigOutcome {
    fn from(v: actors::node::ConfigOutcome) -> Self {
        match v {
            actors::node::ConfigOutcome::Applied => ConfigOutcome::Applied,
            actors::node::ConfigOutcome::Failed { error } => ConfigOutcome::Failed(ConfigFailure { error }),
        }
    }
}

impl From<ConfigOutcome> for actors::node::ConfigOutcome {
    fn from(v: ConfigOutcome) -> Self {
        match v {
            ConfigOutcome::Applied => actors::node::ConfigOutcome::Applied,
            ConfigOutcome::Failed(ConfigFailure { error }) => actors::node::ConfigOutcome::Failed { error },
        }
    }
}

impl From<actors::node::ConfigAck> for ConfigAck {
    fn from(v: actors::node::ConfigAck) -> Self {
        let actors::node::ConfigAck { version, outcome } = v;
        ConfigAck { version, outcome: outcome.into() }
    }
}

impl From<ConfigAck> for actors::node::ConfigAck {
    fn from(v: ConfigAck) -> Self {
        let ConfigAck { version, outcome } = v;
        actors::node::ConfigAck { version, outcome: outcome.into() }
    }
}

impl From<actors::node::NodeCert> for NodeCert {
    fn from(v: actors::node::NodeCert) -> Self {
        let actors::node::NodeCert { fingerprint, not_after_ms, retired } = v;
        NodeCert { fingerprint, not_after_ms, retired }
    }
}

impl From<NodeCert> for actors::node::NodeCert {
    fn from(v: NodeCert) -> Self {
        let NodeCert { fingerprint, not_after_ms, retired } = v;
        actors::node::NodeCert { fingerprint, not_after_ms, retired }
    }
}

impl From<actors::node::Node> for Node {
    fn from(v: actors::node::Node) -> Self {
        let actors::node::Node {
            id,
            state,
            draining,
            capabilities,
            token_id,
            token_labels,
            key_sha256,
            certs,
            config_version,
            config,
            config_ack,
            joined_ms,
            updated_ms,
        } = v;
        Node {
            id,
            state: state.into(),
            draining,
            capabilities: capabilities.into(),
            token_id,
            token_labels,
            key_sha256,
            certs: certs.into_iter().map(Into::into).collect(),
            config_version,
            config: config.into(),
            config_ack: config_ack.map(Into::into),
            joined_ms,
            updated_ms,
        }
    }
}

impl From<Node> for actors::node::Node {
    fn from(v: Node) -> Self {
        let Node {
            id,
            state,
            draining,
            capabilities,
            token_id,
            token_labels,
            key_sha256,
            certs,
            config_version,
            config,
            config_ack,
            joined_ms,
            updated_ms,
        } = v;
        actors::node::Node {
            id,
            state: state.into(),
            draining,
            capabilities: capabilities.into(),
            token_id,
            token_labels,
            key_sha256,
            certs: certs.into_iter().map(Into::into).collect(),
            config_version,
            config: config.into(),
            config_ack: config_ack.map(Into::into),
            joined_ms,
            updated_ms,
        }
    }
}

impl From<actors::node::JoinToken> for JoinToken {
    fn from(v: actors::node::JoinToken) -> Self {
        let actors::node::JoinToken {
            id,
            labels,
            uses_allowed,
            uses,
            expires_ms,
            revoked,
            created_ms,
            created_by,
            nodes,
        } = v;
        JoinToken { id, labels, uses_allowed, uses, expires_ms, revoked, created_ms, created_by, nodes }
    }
}

impl From<JoinToken> for actors::node::JoinToken {
    fn from(v: JoinToken) -> Self {
        let JoinToken { id, labels, uses_allowed, uses, expires_ms, revoked, created_ms, created_by, nodes } = v;
        actors::node::JoinToken { id, labels, uses_allowed, uses, expires_ms, revoked, created_ms, created_by, nodes }
    }
}

impl From<actors::node::NodeView> for NodeView {
    fn from(v: actors::node::NodeView) -> Self {
        let actors::node::NodeView { node, last_seen_ms_ago } = v;
        NodeView { node: node.into(), last_seen_ms_ago }
    }
}
