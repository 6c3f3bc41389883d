//! The worker's own durable state, in its own log (a redb file in its data dir):
//! its identity after the join, the configuration last applied, and each job's
//! result, kept until the orchestrator has recorded it.

use std::path::Path;

use actors::node::Origin;
use actors::storage::{self, Append, IndexOp, Log, LogWriter, WriterHandle};
use cluster::proto::{JobResult, NodeConfig};
use cluster::token::TokenError;
use cluster::transport::TransportError;
use serde::{Deserialize, Serialize};

pub(super) const IDENTITY: &str = "worker/identity";
pub(super) const CONFIG: &str = "worker/config";
/// Index of job results not yet recorded by the orchestrator.
const UNREPORTED: &str = "unreported_results";

/// Who this worker is in the cluster, as stored after the join.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: String,
    pub key_pkcs8: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub issued_ms: i64,
    pub not_after_ms: i64,
    pub ca_der: Vec<u8>,
    pub orchestrators: Vec<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("orchestrators", &self.orchestrators)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Renew once two thirds of the certificate's life have passed.
    pub(super) fn wants_renewal(&self, now_ms: i64) -> bool {
        now_ms >= self.issued_ms + (self.not_after_ms - self.issued_ms) * 2 / 3
    }
}

/// Why the worker could not join or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the orchestrator refused: {message} ({code})")]
    Refused { code: String, message: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("worker store: {0}")]
    Store(String),
    #[error("this worker has not joined a cluster yet; start it once with --join and --token")]
    NotJoined,
    #[error("unexpected answer from the orchestrator: {0}")]
    Protocol(String),
    #[error("no orchestrator address in {0:?} resolves")]
    NoAddress(Vec<String>),
}

/// The worker's own durable state: its identity and the last configuration applied.
pub struct WorkerStore {
    log: Log,
    writer: Option<LogWriter>,
    thread: Option<WriterHandle>,
}

impl Drop for WorkerStore {
    /// Closes the file before returning, so the store can be reopened at once (a
    /// restarted worker in the same process, as in simulations). Only the store
    /// holds its writer, so the writer thread ends as soon as it is dropped.
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(t) = self.thread.take() {
            t.join();
        }
    }
}

impl WorkerStore {
    /// Opens (or creates) `dir/worker.redb`; the directory is private to the worker.
    pub fn open(dir: &Path) -> Result<Self, WorkerError> {
        Self::open_with(dir, false)
    }

    /// As [`WorkerStore::open`], committing on the caller's thread (the simulator's
    /// runs must not depend on another thread's timing).
    pub fn open_inline(dir: &Path) -> Result<Self, WorkerError> {
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, inline: bool) -> Result<Self, WorkerError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |e: &dyn std::fmt::Display| WorkerError::Store(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| err(&e))?;
        let path = dir.join("worker.redb");
        let log = Log::open(&path).map_err(|e| err(&e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| err(&e))?;
        if inline {
            return Ok(WorkerStore { writer: Some(LogWriter::inline(&log)), log, thread: None });
        }
        let (writer, handle) = LogWriter::start(&log).map_err(|e| err(&e))?;
        Ok(WorkerStore { log, writer: Some(writer), thread: Some(handle) })
    }

    fn latest<T: for<'de> Deserialize<'de>>(&self, stream: &str) -> Result<Option<T>, WorkerError> {
        let (seq, _) = self.log.stream_head(stream).map_err(|e| WorkerError::Store(e.to_string()))?;
        if seq == 0 {
            return Ok(None);
        }
        let records = self.log.read_stream(stream, seq - 1).map_err(|e| WorkerError::Store(e.to_string()))?;
        match records.last() {
            Some(r) => serde_json::from_slice(&r.payload).map(Some).map_err(|e| WorkerError::Store(e.to_string())),
            None => Ok(None),
        }
    }

    pub(super) async fn save(&self, stream: &str, kind: &str, value: &impl Serialize) -> Result<(), WorkerError> {
        self.save_indexed(stream, kind, value, Vec::new()).await
    }

    async fn save_indexed(
        &self,
        stream: &str,
        kind: &str,
        value: &impl Serialize,
        index_ops: Vec<IndexOp>,
    ) -> Result<(), WorkerError> {
        let (seq, _) = self.log.stream_head(stream).map_err(|e| WorkerError::Store(e.to_string()))?;
        let origin = Origin {
            actor: storage::ActorRef { kind: "system".into(), id: "worker".into(), role: "worker".into() },
            ..Origin::system(kind)
        };
        let event = origin
            .event((uuid::Uuid::now_v7(), crate::clock::now_ms()), kind, (None, None), value)
            .map_err(|e| WorkerError::Store(e.to_string()))?;
        let append =
            Append { stream: stream.into(), expected_seq: seq, events: vec![event], index_ops, ..Default::default() };
        let writer = self.writer.as_ref().ok_or_else(|| WorkerError::Store("store closed".into()))?;
        writer.append(append).await.map_err(|e| WorkerError::Store(e.to_string()))?;
        Ok(())
    }

    /// Why the store's writes are failing, while they are (the worker's `/ready` says so).
    pub fn fault(&self) -> Option<String> {
        self.log.fault()
    }

    /// The identity stored by the join, if this worker has joined.
    pub fn identity(&self) -> Result<Option<Identity>, WorkerError> {
        self.latest(IDENTITY)
    }

    /// The configuration last applied, with its version.
    pub fn applied_config(&self) -> Result<Option<(u64, NodeConfig)>, WorkerError> {
        self.latest(CONFIG)
    }

    /// The stored result of a job this worker ran, if it did.
    pub fn job_result(&self, job_id: &str) -> Result<Option<JobResult>, WorkerError> {
        let Some(first) = self
            .log
            .read_stream(&job_stream(job_id), 0)
            .map_err(|e| WorkerError::Store(e.to_string()))?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        serde_json::from_slice(&first.payload).map(Some).map_err(|e| WorkerError::Store(e.to_string()))
    }

    /// Keeps a job's result (durably) and marks it to be reported.
    pub async fn save_job_result(&self, job_id: &str, result: &JobResult) -> Result<(), WorkerError> {
        let unreported = IndexOp::Put { index: UNREPORTED.into(), key: job_id.into(), value: Vec::new() };
        self.save_indexed(&job_stream(job_id), "worker.job_finished", result, vec![unreported]).await
    }

    /// The orchestrator recorded the job's result.
    pub async fn mark_reported(&self, job_id: &str) -> Result<(), WorkerError> {
        let reported = IndexOp::Delete { index: UNREPORTED.into(), key: job_id.into() };
        self.save_indexed(&job_stream(job_id), "worker.job_reported", &job_id, vec![reported]).await
    }

    /// Results the orchestrator has not confirmed yet.
    pub fn unreported(&self) -> Result<Vec<(String, JobResult)>, WorkerError> {
        let ids = self.log.index_scan(UNREPORTED, "", usize::MAX).map_err(|e| WorkerError::Store(e.to_string()))?;
        let mut out = Vec::new();
        for (id, _) in ids {
            if let Some(r) = self.job_result(&id)? {
                out.push((id, r));
            }
        }
        Ok(out)
    }
}

fn job_stream(job_id: &str) -> String {
    format!("worker/job/{job_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result stored by a worker from before `lease_lost` existed still reads.
    #[test]
    fn results_stored_before_lease_lost_existed_still_read() {
        let old = r#"{"exit_code":0,"stdout":"hi","stderr":"","stdout_truncated":false,"stderr_truncated":false,
            "oom_killed":false,"timed_out":false,"cancelled":false,"error":null,"started_ms":1,"finished_ms":2}"#;
        let result: JobResult = serde_json::from_str(old).expect("an old result decodes");
        assert_eq!((result.exit_code, result.lease_lost), (Some(0), false));
    }
}
