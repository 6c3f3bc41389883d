//! The worker's side of the cluster: join once with a token, keep the identity in
//! the worker's own log, then stay connected with mutual TLS: say hello, send
//! heartbeats, apply and acknowledge pushed configuration, renew the certificate
//! before it expires, and reconnect with backoff when the orchestrator goes away.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::node::Origin;
use actors::node::{Capabilities, ConfigAck, ConfigOutcome, NodeConfig};
use actors::task::JobResult;
use certs::NodeKey;
use quinn::{Connection, Endpoint};
use serde::{Deserialize, Serialize};
use storage::{Append, IndexOp, Log, LogWriter, WriterHandle};
use tokio::sync::watch;

use crate::jobs::{Executor, Jobs};
use crate::proto::{Push, PushReply, Request, Response, codes};
use crate::token::{self, TokenError};
use crate::transport::{self, TransportError};
use crate::wire;

const IDENTITY: &str = "worker/identity";
const CONFIG: &str = "worker/config";
/// Index of job results not yet recorded by the orchestrator.
const UNREPORTED: &str = "unreported_results";
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Join attempts before giving up on an unreachable orchestrator (about a minute).
const JOIN_ATTEMPTS: u32 = 10;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

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
    fn wants_renewal(&self, now_ms: i64) -> bool {
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
        use std::os::unix::fs::PermissionsExt;
        let err = |e: &dyn std::fmt::Display| WorkerError::Store(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| err(&e))?;
        let path = dir.join("worker.redb");
        let log = Log::open(&path).map_err(|e| err(&e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| err(&e))?;
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

    async fn save(&self, stream: &str, kind: &str, value: &impl Serialize) -> Result<(), WorkerError> {
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
            .event((uuid::Uuid::now_v7(), now_ms()), kind, (None, None), value)
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

    /// Writes handed to the store's writer and not yet answered (see [`LogWriter::in_flight`]).
    pub fn in_flight(&self) -> Option<Arc<std::sync::atomic::AtomicUsize>> {
        self.writer.as_ref().map(LogWriter::in_flight)
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

/// What the worker's `/ready` and metrics report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStatus {
    pub node_id: Option<String>,
    pub connected: bool,
    /// The configuration version last acknowledged as applied.
    pub applied_version: Option<u64>,
    /// Why the worker is not connected, when it is not.
    pub problem: Option<String>,
}

impl WorkerStatus {
    /// Ready once joined, connected and running an acknowledged configuration.
    pub fn ready(&self) -> Result<(), String> {
        match (&self.node_id, self.connected, self.applied_version) {
            (None, _, _) => Err("not joined".into()),
            (_, false, _) => Err(self.problem.clone().unwrap_or_else(|| "not connected to the orchestrator".into())),
            (_, true, None) => Err("no configuration acknowledged yet".into()),
            (Some(_), true, Some(_)) => Ok(()),
        }
    }
}

/// Joins the cluster with `token`, storing the identity. `via` overrides the
/// addresses in the token (and is tried first from then on). Refusals carry the
/// orchestrator's reason (expired, used up, revoked, forged).
pub async fn join(
    store: &WorkerStore,
    endpoint: &Endpoint,
    token: &str,
    via: Option<&str>,
    capabilities: Capabilities,
) -> Result<Identity, WorkerError> {
    let mut claims = token::read(token)?;
    if let Some(via) = via {
        claims.orchestrators.insert(0, via.to_owned());
    }
    let key = NodeKey::generate().map_err(|e| WorkerError::Store(e.to_string()))?;
    let tls = certs::join_client_config(&claims.ca_sha256).map_err(|e| TransportError::Tls(e.to_string()))?;
    let addr = resolve(&claims.orchestrators).await?;
    let request = Request::Join { token: token.to_owned(), public_key: key.public_raw(), capabilities };
    // The same key on every attempt: a join whose answer was lost is answered again
    // with the same node, not a second one.
    let mut backoff = BACKOFF_FIRST;
    let mut attempt = 1;
    let response = loop {
        let answer = match transport::connect(endpoint, addr, tls.clone()).await {
            Ok(conn) => {
                let answer = transport::call(&conn, &request).await;
                conn.close(0u32.into(), b"joined");
                answer
            }
            Err(e) => Err(e),
        };
        match answer {
            Err(e) if e.is_transient() && attempt < JOIN_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, retry_in = ?backoff, "join attempt failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                attempt += 1;
            }
            other => break other,
        }
    };
    match response? {
        Response::Joined(b) => {
            let identity = Identity {
                node_id: b.node_id,
                key_pkcs8: key.pkcs8(),
                cert_der: b.cert_der,
                issued_ms: now_ms(),
                not_after_ms: b.not_after_ms,
                ca_der: b.ca_der,
                orchestrators: via.map(str::to_owned).into_iter().chain(b.orchestrators).collect(),
            };
            store.save(IDENTITY, "worker.joined", &identity).await?;
            tracing::info!(node = %identity.node_id, "joined the cluster");
            Ok(identity)
        }
        Response::Refused { code, message } => Err(WorkerError::Refused { code, message }),
        other => Err(WorkerError::Protocol(format!("{other:?}"))),
    }
}

async fn resolve(addrs: &[String]) -> Result<SocketAddr, WorkerError> {
    for a in addrs {
        if let Ok(addr) = a.parse::<SocketAddr>() {
            return Ok(addr);
        }
        if let Ok(mut found) = tokio::net::lookup_host(a.as_str()).await
            && let Some(addr) = found.next()
        {
            return Ok(addr);
        }
    }
    Err(WorkerError::NoAddress(addrs.to_vec()))
}

/// A joined worker's connection loop.
pub struct Worker {
    store: Arc<WorkerStore>,
    endpoint: Endpoint,
    capabilities: Capabilities,
    jobs: Arc<Jobs>,
    status: watch::Sender<WorkerStatus>,
    /// Dialled before the addresses stored at the join (the orchestrator moved).
    preferred: Option<String>,
}

/// How a session with the orchestrator ended.
enum SessionEnd {
    Shutdown,
    /// The orchestrator removed this node: stop for good.
    Removed(String),
    Broken(WorkerError),
    /// A new certificate was saved: reconnect with it at once (the old one is
    /// retired as soon as the new one is used).
    Renewed,
}

impl Worker {
    /// A worker for the identity in `store` (join first).
    /// A worker for the identity in `store` (join first). Jobs run through
    /// `executor`; without one (no container engine) every job is refused.
    pub fn new(
        store: Arc<WorkerStore>,
        endpoint: Endpoint,
        capabilities: Capabilities,
        executor: Option<Arc<dyn Executor>>,
    ) -> Result<Self, WorkerError> {
        let identity = store.identity()?.ok_or(WorkerError::NotJoined)?;
        let status = WorkerStatus { node_id: Some(identity.node_id), ..Default::default() };
        let jobs = Jobs::new(store.clone(), executor);
        Ok(Worker { store, endpoint, capabilities, jobs, status: watch::channel(status).0, preferred: None })
    }

    /// Dials `addr` first from now on (`--join` on a later start; `up` on a new port).
    pub fn prefer(mut self, addr: Option<String>) -> Self {
        self.preferred = addr;
        self
    }

    fn heartbeat_interval(&self) -> Duration {
        let ms = match self.store.applied_config() {
            Ok(Some((_, c))) => c.heartbeat_interval_ms,
            _ => NodeConfig::default().heartbeat_interval_ms,
        };
        Duration::from_millis(ms)
    }

    /// Follows the worker's status (for `/ready`).
    pub fn status(&self) -> watch::Receiver<WorkerStatus> {
        self.status.subscribe()
    }

    /// Stays connected until `shutdown` turns true, reconnecting with exponential
    /// backoff. Returns an error only when this node was removed.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let fence = {
            let (jobs, store) = (self.jobs.clone(), self.store.clone());
            tokio::spawn(async move {
                loop {
                    let beat = match store.applied_config() {
                        Ok(Some((_, c))) => Duration::from_millis(c.heartbeat_interval_ms),
                        _ => Duration::from_millis(NodeConfig::default().heartbeat_interval_ms),
                    };
                    jobs.fence(beat);
                    tokio::time::sleep(beat / 4).await;
                }
            })
        };
        let result = self.stay_connected(&mut shutdown).await;
        fence.abort();
        result
    }

    async fn stay_connected(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), WorkerError> {
        let mut backoff = BACKOFF_FIRST;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let end = match self.connect().await {
                Ok(conn) => {
                    backoff = BACKOFF_FIRST;
                    let end = self.session(&conn, shutdown).await;
                    conn.close(0u32.into(), b"bye");
                    end
                }
                Err(e) => SessionEnd::Broken(e),
            };
            self.status.send_modify(|s| s.connected = false);
            match end {
                SessionEnd::Shutdown => return Ok(()),
                SessionEnd::Removed(message) => {
                    self.status.send_modify(|s| s.problem = Some(message.clone()));
                    return Err(WorkerError::Refused { code: codes::NODE_REMOVED.into(), message });
                }
                SessionEnd::Renewed => continue,
                SessionEnd::Broken(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "lost the orchestrator; reconnecting");
                    metrics::counter!("dispatch_worker_reconnects_total").increment(1);
                    self.status.send_modify(|s| s.problem = Some(e.to_string()));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(&self) -> Result<Connection, WorkerError> {
        let identity = self.store.identity()?.ok_or(WorkerError::NotJoined)?;
        let key = NodeKey::from_pkcs8(&identity.key_pkcs8).map_err(|e| WorkerError::Store(e.to_string()))?;
        let tls = certs::node_client_config(&identity.ca_der, &identity.cert_der, &key)
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let addrs: Vec<String> = self.preferred.iter().cloned().chain(identity.orchestrators).collect();
        let addr = resolve(&addrs).await?;
        Ok(transport::connect(&self.endpoint, addr, tls).await?)
    }

    async fn session(&self, conn: &Connection, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        match transport::call(conn, &Request::Hello { capabilities: self.capabilities.clone() }).await {
            Ok(Response::Welcome { node_id, config_version }) => {
                tracing::info!(node = %node_id, config_version, "connected to the orchestrator");
                // Already running the current version (acknowledged before a reconnect).
                if let Ok(Some((applied, _))) = self.store.applied_config()
                    && applied == config_version
                {
                    self.status.send_modify(|s| s.applied_version = Some(applied));
                }
            }
            Ok(Response::Refused { code, message }) if code == codes::NODE_REMOVED => {
                return SessionEnd::Removed(message);
            }
            Ok(Response::Refused { code, message }) => {
                return SessionEnd::Broken(WorkerError::Refused { code, message });
            }
            Ok(other) => return SessionEnd::Broken(WorkerError::Protocol(format!("{other:?}"))),
            Err(e) => return SessionEnd::Broken(e.into()),
        }
        self.status.send_modify(|s| {
            s.connected = true;
            s.problem = None;
        });
        metrics::gauge!("dispatch_worker_connected").set(1.0);
        let pushes =
            tokio::spawn(serve_pushes(conn.clone(), self.store.clone(), self.status.clone(), self.jobs.clone()));
        let reports = {
            let (jobs, conn) = (self.jobs.clone(), conn.clone());
            tokio::spawn(async move { jobs.connected(&conn).await })
        };
        let end = self.heartbeats(conn, shutdown).await;
        pushes.abort();
        reports.abort();
        self.jobs.disconnected();
        metrics::gauge!("dispatch_worker_connected").set(0.0);
        end
    }

    async fn heartbeats(&self, conn: &Connection, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let mut status = self.status.subscribe();
        // The first heartbeat goes at once: it renews the leases of jobs that kept
        // running while the connection was down.
        let mut first = true;
        loop {
            let wait = if first { Duration::ZERO } else { self.heartbeat_interval() };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A configuration was applied: its interval counts from now.
                _ = status.changed() => continue,
                _ = shutdown.changed() => return SessionEnd::Shutdown,
                _ = conn.closed() => return SessionEnd::Broken(WorkerError::Protocol(format!("connection closed: {:?}", conn.close_reason()))),
            }
            first = false;
            let interval = self.heartbeat_interval();
            let sent = tokio::time::Instant::now();
            let heartbeat = Request::Heartbeat { running: self.jobs.running_ids() };
            match transport::call_within(conn, &heartbeat, (interval * 2).min(transport::REQUEST_TIMEOUT)).await {
                Ok(Response::HeartbeatOk) => self.jobs.renewed(sent),
                Ok(Response::Refused { code, message }) if code == codes::NODE_REMOVED => {
                    return SessionEnd::Removed(message);
                }
                Ok(other) => return SessionEnd::Broken(WorkerError::Protocol(format!("{other:?}"))),
                Err(e) => return SessionEnd::Broken(e.into()),
            }
            match self.renew_if_due(conn).await {
                Ok(true) => return SessionEnd::Renewed,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "certificate renewal failed; will retry"),
            }
        }
    }

    /// Renews the certificate when two thirds of its life have passed; true when a
    /// new one was saved.
    async fn renew_if_due(&self, conn: &Connection) -> Result<bool, WorkerError> {
        let identity = self.store.identity()?.ok_or(WorkerError::NotJoined)?;
        if !identity.wants_renewal(now_ms()) {
            return Ok(false);
        }
        let key = NodeKey::generate().map_err(|e| WorkerError::Store(e.to_string()))?;
        match transport::call(conn, &Request::RenewCert { public_key: key.public_raw() }).await? {
            Response::Renewed { cert_der, not_after_ms } => {
                let renewed =
                    Identity { key_pkcs8: key.pkcs8(), cert_der, issued_ms: now_ms(), not_after_ms, ..identity };
                self.store.save(IDENTITY, "worker.cert_renewed", &renewed).await?;
                tracing::info!(node = %renewed.node_id, "certificate renewed");
                Ok(true)
            }
            Response::Refused { code, message } => Err(WorkerError::Refused { code, message }),
            other => Err(WorkerError::Protocol(format!("{other:?}"))),
        }
    }
}

/// Answers the orchestrator's pushes (configuration, jobs, cancels) for as long as
/// the connection lives.
async fn serve_pushes(conn: Connection, store: Arc<WorkerStore>, status: watch::Sender<WorkerStatus>, jobs: Arc<Jobs>) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let reply = match wire::read::<Push>(&mut recv).await {
            Ok(Push::ApplyConfig { version, config }) => {
                let outcome = apply_config(&store, version, &config).await;
                if outcome == ConfigOutcome::Applied {
                    status.send_modify(|s| s.applied_version = Some(version));
                    metrics::gauge!("dispatch_worker_config_version").set(version as f64);
                }
                tracing::info!(version, ?outcome, "configuration answered");
                PushReply::ConfigAck(ConfigAck { version, outcome })
            }
            Ok(Push::RunJob { job, lease_ms }) => {
                let slots = store.applied_config().ok().flatten().map_or(0, |(_, c)| c.max_concurrent_jobs);
                PushReply::Job(jobs.offer(job, lease_ms, slots))
            }
            Ok(Push::CancelJob { job_id }) => PushReply::Job(jobs.cancel(&job_id)),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable push");
                continue;
            }
        };
        let _ = wire::write(&mut send, &reply).await;
        let _ = send.finish();
    }
}

/// Applies a configuration: checks it and stores it before saying `applied`.
pub async fn apply_config(store: &WorkerStore, version: u64, config: &NodeConfig) -> ConfigOutcome {
    if let Err(error) = config.validate() {
        return ConfigOutcome::Failed { error };
    }
    match store.save(CONFIG, "worker.config_applied", &(version, config)).await {
        Ok(()) => ConfigOutcome::Applied,
        Err(e) => ConfigOutcome::Failed { error: e.to_string() },
    }
}
