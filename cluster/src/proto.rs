//! The messages of the cluster protocol. The worker opens a stream per request
//! ([`Request`] → [`Response`]); the orchestrator opens a stream to push
//! configuration ([`Push`] → [`PushReply`]).

use actors::node::{Capabilities, ConfigAck, NodeConfig};
use actors::task::{JobResult, JobSpec};
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
