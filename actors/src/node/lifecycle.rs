//! The life of a worker node as seen by the orchestrator, as pure functions:
//! `decide(node, command) → events` and `apply(node, event) → node`.
//!
//! ```text
//! JOINING ──connect──► ACTIVE ──drain──► DRAINING
//!                        │  ▲               │ ▲
//!        silent too long │  │ reconnect     │ │ (draining nodes come back DRAINING)
//!                        ▼  │               ▼ │
//!                     UNREACHABLE ──still silent──► LOST
//! any state ──remove──► REMOVED (final; its certificates are refused)
//! ```
//!
//! Heartbeats are not events (they would flood the log); only the state changes they
//! cause are. Configuration is versioned: every change bumps `config_version`, and
//! the node's acknowledgement (`applied` or `failed` with the error) names the version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeState {
    Joining,
    Active,
    Draining,
    Unreachable,
    Lost,
    Removed,
}

impl NodeState {
    /// The state's wire and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "JOINING",
            NodeState::Active => "ACTIVE",
            NodeState::Draining => "DRAINING",
            NodeState::Unreachable => "UNREACHABLE",
            NodeState::Lost => "LOST",
            NodeState::Removed => "REMOVED",
        }
    }
}

/// What a node reports about itself at join and whenever it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            heartbeat_interval_ms: 5_000,
            max_concurrent_jobs: 2,
            sandbox_image: "dispatch-sandbox:busybox".into(),
            allowed_network_policies: vec!["none".into(), "restricted".into()],
            default_memory_bytes: 256 << 20,
            default_cpu_millis: 1_000,
            labels: BTreeMap::new(),
        }
    }
}

/// How often a node may be told to heartbeat, in milliseconds.
pub const HEARTBEAT_INTERVAL_MS: std::ops::RangeInclusive<u64> = 100..=600_000;
/// The most jobs a node may be told to run at once.
pub const MAX_CONCURRENT_JOBS: u32 = 1024;
/// The network policies a node may allow.
pub const NETWORK_POLICIES: [&str; 2] = ["none", "restricted"];

impl NodeConfig {
    /// Checks the values a node could not run with.
    pub fn validate(&self) -> Result<(), String> {
        if !HEARTBEAT_INTERVAL_MS.contains(&self.heartbeat_interval_ms) {
            return Err(format!("heartbeat_interval_ms must be 100..=600000, got {}", self.heartbeat_interval_ms));
        }
        if self.max_concurrent_jobs > MAX_CONCURRENT_JOBS {
            return Err(format!("max_concurrent_jobs must be at most 1024, got {}", self.max_concurrent_jobs));
        }
        if let Some(p) = self.allowed_network_policies.iter().find(|p| !NETWORK_POLICIES.contains(&p.as_str())) {
            return Err(format!("unknown network policy {p:?} (none, restricted)"));
        }
        if self.sandbox_image.trim().is_empty() {
            return Err("sandbox_image must not be empty".into());
        }
        Ok(())
    }
}

/// How a node answered a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigOutcome {
    Applied,
    Failed { error: String },
}

/// A node's acknowledgement of one configuration version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigAck {
    pub version: u64,
    pub outcome: ConfigOutcome,
}

/// A certificate issued to the node, known by its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCert {
    pub fingerprint: String,
    pub not_after_ms: i64,
    /// A newer certificate has been used to connect: this one opens nothing any more.
    #[serde(default)]
    pub retired: bool,
}

/// A worker node as the orchestrator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl Node {
    /// A connection presenting the certificate `fingerprint` may speak for this node:
    /// one issued to it and not replaced, while the node is not removed.
    pub fn accepts_cert(&self, fingerprint: &str) -> bool {
        self.state != NodeState::Removed && self.certs.iter().any(|c| c.fingerprint == fingerprint && !c.retired)
    }

    /// The node may be given work: active, not draining, and running the latest
    /// configuration it acknowledged as applied.
    pub fn schedulable(&self) -> bool {
        self.state == NodeState::Active && self.config_ack.as_ref().is_some_and(|a| a.outcome == ConfigOutcome::Applied)
    }

    /// The node still has to acknowledge its current configuration version.
    pub fn config_pending(&self) -> bool {
        self.state != NodeState::Removed && self.config_ack.as_ref().is_none_or(|a| a.version < self.config_version)
    }
}

/// Something that happened to a node. Stored in the log as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Events and commands live for one command's handling; boxing the join would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum NodeEvent {
    Joined {
        capabilities: Capabilities,
        token_id: String,
        key_sha256: String,
        token_labels: BTreeMap<String, String>,
        cert: NodeCert,
        config: NodeConfig,
    },
    Connected {
        capabilities: Capabilities,
    },
    CapabilitiesReported {
        capabilities: Capabilities,
    },
    Unreachable {
        silent_ms: u64,
    },
    Lost {
        silent_ms: u64,
    },
    ConfigSet {
        version: u64,
        config: NodeConfig,
    },
    ConfigAcknowledged {
        ack: ConfigAck,
    },
    DrainStarted,
    Removed,
    CertIssued {
        cert: NodeCert,
    },
    /// The newest certificate was used to connect; every older one is retired.
    OlderCertsRetired,
}

impl NodeEvent {
    /// The event's kind as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeEvent::Joined { .. } => "node.joined",
            NodeEvent::Connected { .. } => "node.connected",
            NodeEvent::CapabilitiesReported { .. } => "node.capabilities_reported",
            NodeEvent::Unreachable { .. } => "node.unreachable",
            NodeEvent::Lost { .. } => "node.lost",
            NodeEvent::ConfigSet { .. } => "node.config_set",
            NodeEvent::ConfigAcknowledged { .. } => "node.config_acknowledged",
            NodeEvent::DrainStarted => "node.drain_started",
            NodeEvent::Removed => "node.removed",
            NodeEvent::CertIssued { .. } => "node.cert_issued",
            NodeEvent::OlderCertsRetired => "node.older_certs_retired",
        }
    }
}

/// What is asked of a node.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum NodeCommand {
    Join {
        capabilities: Capabilities,
        token_id: String,
        key_sha256: String,
        token_labels: BTreeMap<String, String>,
        cert: NodeCert,
        config: NodeConfig,
    },
    /// The node opened an authenticated connection.
    Connect {
        capabilities: Capabilities,
    },
    ReportCapabilities {
        capabilities: Capabilities,
    },
    /// The node has not been heard from for `silent_ms`.
    CheckSilence {
        silent_ms: u64,
        unreachable_after_ms: u64,
        lost_after_ms: u64,
    },
    SetConfig {
        config: NodeConfig,
    },
    AcknowledgeConfig {
        ack: ConfigAck,
    },
    Drain,
    Remove,
    IssueCert {
        cert: NodeCert,
    },
    /// A connection presented the certificate `fingerprint`.
    UseCert {
        fingerprint: String,
    },
}

/// Why a command was refused. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("node already exists")]
    AlreadyJoined,
    #[error("no such node")]
    NotFound,
    #[error("node was removed")]
    Removed,
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("acknowledgement for version {acked} but the node's configuration is at version {current}")]
    UnknownConfigVersion { acked: u64, current: u64 },
    #[error("this certificate was replaced by a newer one")]
    CertReplaced,
}

/// The events a command produces on `node` (None before the join).
pub fn decide(node: Option<&Node>, command: &NodeCommand) -> Result<Vec<NodeEvent>, NodeError> {
    use NodeCommand as C;
    use NodeEvent as E;
    let Some(node) = node else {
        return match command {
            C::Join { capabilities, token_id, key_sha256, token_labels, cert, config } => {
                config.validate().map_err(NodeError::InvalidConfig)?;
                Ok(vec![E::Joined {
                    capabilities: capabilities.clone(),
                    token_id: token_id.clone(),
                    key_sha256: key_sha256.clone(),
                    token_labels: token_labels.clone(),
                    cert: cert.clone(),
                    config: config.clone(),
                }])
            }
            _ => Err(NodeError::NotFound),
        };
    };
    if node.state == NodeState::Removed {
        // Removing twice is a no-op; everything else about a removed node is refused.
        return if *command == C::Remove { Ok(vec![]) } else { Err(NodeError::Removed) };
    }
    Ok(match command {
        C::Join { .. } => return Err(NodeError::AlreadyJoined),
        C::Connect { capabilities } => {
            let back = matches!(node.state, NodeState::Joining | NodeState::Unreachable | NodeState::Lost);
            match (back, *capabilities != node.capabilities) {
                (true, _) => vec![E::Connected { capabilities: capabilities.clone() }],
                (false, true) => vec![E::CapabilitiesReported { capabilities: capabilities.clone() }],
                (false, false) => vec![],
            }
        }
        C::ReportCapabilities { capabilities } if *capabilities != node.capabilities => {
            vec![E::CapabilitiesReported { capabilities: capabilities.clone() }]
        }
        C::ReportCapabilities { .. } => vec![],
        C::CheckSilence { silent_ms, unreachable_after_ms, lost_after_ms } => match node.state {
            NodeState::Active | NodeState::Draining if silent_ms >= unreachable_after_ms => {
                vec![E::Unreachable { silent_ms: *silent_ms }]
            }
            NodeState::Unreachable if silent_ms >= lost_after_ms => vec![E::Lost { silent_ms: *silent_ms }],
            _ => vec![],
        },
        C::SetConfig { config } => set_config(node, config)?,
        C::AcknowledgeConfig { ack } => acknowledge_config(node, ack)?,
        C::Drain if node.draining => vec![],
        C::Drain => vec![E::DrainStarted],
        C::Remove => vec![E::Removed],
        C::IssueCert { cert } => vec![E::CertIssued { cert: cert.clone() }],
        C::UseCert { fingerprint } => use_cert(node, fingerprint)?,
    })
}

fn set_config(node: &Node, config: &NodeConfig) -> Result<Vec<NodeEvent>, NodeError> {
    config.validate().map_err(NodeError::InvalidConfig)?;
    if *config == node.config {
        return Ok(vec![]);
    }
    Ok(vec![NodeEvent::ConfigSet { version: node.config_version + 1, config: config.clone() }])
}

fn acknowledge_config(node: &Node, ack: &ConfigAck) -> Result<Vec<NodeEvent>, NodeError> {
    if ack.version > node.config_version {
        return Err(NodeError::UnknownConfigVersion { acked: ack.version, current: node.config_version });
    }
    // An older or repeated acknowledgement changes nothing.
    if node.config_ack.as_ref().is_some_and(|a| a.version > ack.version || a == ack) {
        return Ok(vec![]);
    }
    Ok(vec![NodeEvent::ConfigAcknowledged { ack: ack.clone() }])
}

/// A connection authenticated with this certificate: refused once it was replaced; the
/// first use of the newest one retires the older ones.
fn use_cert(node: &Node, fingerprint: &str) -> Result<Vec<NodeEvent>, NodeError> {
    if !node.accepts_cert(fingerprint) {
        return Err(NodeError::CertReplaced);
    }
    let newest = node.certs.last().is_some_and(|c| c.fingerprint == fingerprint);
    let older_live = node.certs.iter().rev().skip(1).any(|c| !c.retired);
    Ok(if newest && older_live { vec![NodeEvent::OlderCertsRetired] } else { vec![] })
}

/// The node after `event`, at time `now_ms`.
pub fn apply(node: Option<Node>, id: &str, now_ms: i64, event: &NodeEvent) -> Option<Node> {
    use NodeEvent as E;
    if let E::Joined { capabilities, token_id, key_sha256, token_labels, cert, config } = event {
        return Some(Node {
            id: id.to_owned(),
            state: NodeState::Joining,
            draining: false,
            capabilities: capabilities.clone(),
            token_id: token_id.clone(),
            token_labels: token_labels.clone(),
            key_sha256: key_sha256.clone(),
            certs: vec![cert.clone()],
            config_version: 1,
            config: config.clone(),
            config_ack: None,
            joined_ms: now_ms,
            updated_ms: now_ms,
        });
    }
    let mut node = node?;
    node.updated_ms = now_ms;
    let back = if node.draining { NodeState::Draining } else { NodeState::Active };
    match event {
        E::Joined { .. } => {}
        E::Connected { capabilities } => {
            node.capabilities = capabilities.clone();
            node.state = back;
        }
        E::CapabilitiesReported { capabilities } => node.capabilities = capabilities.clone(),
        E::Unreachable { .. } => node.state = NodeState::Unreachable,
        E::Lost { .. } => node.state = NodeState::Lost,
        E::ConfigSet { version, config } => {
            node.config_version = *version;
            node.config = config.clone();
        }
        E::ConfigAcknowledged { ack } => node.config_ack = Some(ack.clone()),
        E::DrainStarted => {
            node.draining = true;
            if node.state == NodeState::Active {
                node.state = NodeState::Draining;
            }
        }
        E::Removed => node.state = NodeState::Removed,
        E::CertIssued { cert } => node.certs.push(cert.clone()),
        E::OlderCertsRetired => {
            let newest = node.certs.len().saturating_sub(1);
            node.certs.iter_mut().take(newest).for_each(|c| c.retired = true);
        }
    }
    Some(node)
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
