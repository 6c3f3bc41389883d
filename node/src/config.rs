//! How an orchestrator is configured: what the CLI's flags become, and what the API
//! reads of it (edge limits, the inference precondition).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actors::kernel::SupervisorConfig;
use actors::node::MembershipConfig;

/// How to run an orchestrator.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// Accept `X-Actor-*` identity headers (development only).
    pub dev_headers: bool,
    /// Incident templates file replacing the built-in set.
    pub templates_file: Option<PathBuf>,
    /// How many ticket actors stay awake.
    pub supervisor: SupervisorConfig,
    /// How long a retry with the same Idempotency-Key replays the first answer.
    pub idempotency_retention: Duration,
    /// Where the cluster (QUIC) listener binds.
    pub cluster_addr: SocketAddr,
    /// The address written into join tokens; defaults to the bound cluster address.
    pub advertise_addr: Option<String>,
    /// Silence thresholds and the configuration new nodes start with.
    pub membership: MembershipConfig,
    /// Work needs inference: not ready until a node has a local runtime or a provider is set.
    pub inference: InferenceConfig,
    /// How lane callbacks are retried before they are dead-lettered.
    pub delivery: crate::lanes::DeliveryPolicy,
    /// Limits at the edges: HTTP connections and deadlines, trusted proxies, storage.
    pub edge: EdgeConfig,
    /// HTTPS on the API port (None: plain HTTP, for loopback-only setups).
    pub https: Option<crate::tls::HttpsConfig>,
    /// How many lane actors stay awake.
    pub lanes: SupervisorConfig,
    /// The key type of a cluster CA made at first start: P-256 (the default; a browser
    /// can trust it for HTTPS) or Ed25519 (deterministic handshakes, for simulations).
    pub cluster_keys: cluster::certs::KeyAlgorithm,
}

/// Limits at the edges of the orchestrator.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub http: crate::http::HttpLimits,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies); nobody else's is.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// New work is refused (507) while the data dir's filesystem has less free space,
    /// so the log itself always has room.
    pub min_free_bytes: u64,
    /// Evidence bytes each uploader may store.
    pub blob_quota_bytes: u64,
    /// The data dir whose free space is watched (set by `Orchestrator::start`).
    pub data_dir: PathBuf,
    /// Limits of each event stream (`GET /v1/stream`).
    pub streams: crate::api::StreamLimits,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            http: Default::default(),
            trusted_proxies: vec![],
            min_free_bytes: 64 << 20,
            blob_quota_bytes: 1 << 30,
            data_dir: PathBuf::new(),
            streams: Default::default(),
        }
    }
}

/// The inference precondition (seed 004 §4.1).
#[derive(Debug, Clone, Default)]
pub struct InferenceConfig {
    pub required: bool,
    /// An external inference provider (its URL), which satisfies the requirement alone.
    pub provider: Option<String>,
}
