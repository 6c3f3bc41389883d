//! The messages of the cluster protocol. The worker opens a stream per request
//! ([`Request`] → [`Response`]); the orchestrator opens a stream to push
//! configuration and jobs ([`Push`] → [`PushReply`]).
//!
//! The payloads are the protocol's own types, not the orchestrator's domain types:
//! the wire changes only when the protocol does (a field added here is a protocol
//! change), and this crate knows nothing of tickets, tasks or the log. The node maps
//! them to and from its domain (`node/src/protocol.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Worker → orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// The only request allowed without a client certificate.
    Join { token: String, public_key: Vec<u8>, capabilities: Capabilities },
    /// First request on an authenticated connection.
    Hello { capabilities: Capabilities },
    /// Alive, running these jobs (their leases are extended).
    Heartbeat { running: Vec<String> },
    /// A job ended; sent until acknowledged (the result is on the worker's disk first).
    JobFinished { job_id: String, result: JobResult },
    /// A certificate for a new key before the current one expires.
    RenewCert { public_key: Vec<u8> },
    /// Round-trip probe.
    Ping { sent_ns: u64 },
}

impl Request {
    /// Bounded label for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Join { .. } => "join",
            Request::Hello { .. } => "hello",
            Request::Heartbeat { .. } => "heartbeat",
            Request::JobFinished { .. } => "job_finished",
            Request::RenewCert { .. } => "renew_cert",
            Request::Ping { .. } => "ping",
        }
    }
}

/// Orchestrator → worker, answering a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Joined(Bootstrap),
    Welcome {
        node_id: String,
        config_version: u64,
    },
    HeartbeatOk,
    /// The job result was recorded.
    Recorded,
    Renewed {
        cert_der: Vec<u8>,
        not_after_ms: i64,
    },
    Pong {
        sent_ns: u64,
    },
    /// The request was refused; `code` is stable, `message` is for people.
    Refused {
        code: String,
        message: String,
    },
}

/// What a joining node receives: everything it needs to connect from then on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bootstrap {
    pub node_id: String,
    pub cert_der: Vec<u8>,
    pub not_after_ms: i64,
    pub ca_der: Vec<u8>,
    pub orchestrators: Vec<String>,
    pub config_version: u64,
}

/// Orchestrator → worker, unsolicited.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Push {
    ApplyConfig {
        version: u64,
        config: NodeConfig,
    },
    /// Run this job; the worker must stop it if it cannot renew the lease for `lease_ms`.
    RunJob {
        job: JobSpec,
        lease_ms: u64,
    },
    CancelJob {
        job_id: String,
    },
}

/// Worker → orchestrator, answering a [`Push`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PushReply {
    ConfigAck(ConfigAck),
    Job(JobAnswer),
}

/// How a worker answers a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JobAnswer {
    /// Started (or already running: a redelivery).
    Accepted,
    /// Ran before: the stored result, not a second run.
    AlreadyFinished(JobResult),
    Refused(String),
    /// A cancel for a job this worker does not run.
    Unknown,
}

/// Stable refusal codes.
pub mod codes {
    pub const CERT_REQUIRED: &str = "CERT_REQUIRED";
    pub const CERT_UNKNOWN: &str = "CERT_UNKNOWN";
    pub const NODE_REMOVED: &str = "NODE_REMOVED";
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// The certificate was replaced by a renewal; connect with the newest one.
    pub const CERT_REPLACED: &str = "CERT_REPLACED";
    /// A report about a job whose attempt belongs to another node.
    pub const NOT_YOURS: &str = "NOT_YOURS";
}

/// What a node reports about itself at join and on every connection.
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
    pub heartbeat_interval_ms: u64,
    pub max_concurrent_jobs: u32,
    pub sandbox_image: String,
    pub allowed_network_policies: Vec<String>,
    pub default_memory_bytes: u64,
    pub default_cpu_millis: u32,
    pub labels: BTreeMap<String, String>,
}

/// How a node answered a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// How much network a job gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkPolicy {
    /// No network at all.
    #[default]
    None,
    /// An internal network with no route out.
    Restricted,
}

/// Everything a worker needs to run one attempt, and nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// `<task id>/<attempt>`: the key of the worker's stored result.
    pub job_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub command: Vec<String>,
    pub image: String,
    pub network: NetworkPolicy,
    pub memory_bytes: u64,
    pub cpu_millis: u32,
    pub pids: u32,
    pub timeout_ms: u64,
    pub env: BTreeMap<String, String>,
    /// Files written into the job's workspace before it starts (relative paths).
    pub files: BTreeMap<String, String>,
    /// Most bytes of stdout (and of stderr) kept.
    pub output_cap: usize,
}

/// What running a job produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The process's exit code; `None` when it never ran (see `error`).
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub oom_killed: bool,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Stopped by its worker, which could not renew the job's lease. Absent in results
    /// a worker stored before the field existed (its store keeps them as JSON).
    #[serde(default)]
    pub lease_lost: bool,
    /// The sandbox could not run it (no engine, no image, bad spec).
    pub error: Option<String>,
    pub started_ms: i64,
    pub finished_ms: i64,
}
