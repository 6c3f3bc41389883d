//! The worker's side of the cluster: join once with a token, keep the identity in
//! the worker's own log, then stay connected with mutual TLS: say hello, send
//! heartbeats, apply and acknowledge pushed configuration, renew the certificate
//! before it expires, and reconnect with backoff when the orchestrator goes away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cluster::certs::{self, NodeKey};
use cluster::proto::{Capabilities, ConfigAck, ConfigOutcome, NodeConfig, Push, PushReply, Request, Response, codes};
use cluster::token;
use cluster::transport::{self, TransportError};
use cluster::wire;
use quinn::{Connection, Endpoint};
use tokio::sync::watch;

use super::jobs::{Executor, Jobs};
use super::store::{CONFIG, IDENTITY, Identity, WorkerError, WorkerStore};
use crate::clock::now_ms;

const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Join attempts before giving up on an unreachable orchestrator (about a minute).
const JOIN_ATTEMPTS: u32 = 10;

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
    keys: certs::KeyAlgorithm,
) -> Result<Identity, WorkerError> {
    let mut claims = token::read(token)?;
    if let Some(via) = via {
        claims.orchestrators.insert(0, via.to_owned());
    }
    let key = NodeKey::generate(keys).map_err(|e| WorkerError::Store(e.to_string()))?;
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
        heartbeat_interval(&self.store)
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
                    let beat = heartbeat_interval(&store);
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
        let algorithm = NodeKey::from_pkcs8(&identity.key_pkcs8).map_or(Default::default(), |k| k.algorithm());
        let key = NodeKey::generate(algorithm).map_err(|e| WorkerError::Store(e.to_string()))?;
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

/// The applied configuration's heartbeat interval, or the default before any.
fn heartbeat_interval(store: &WorkerStore) -> Duration {
    let ms = match store.applied_config() {
        Ok(Some((_, c))) => c.heartbeat_interval_ms,
        _ => actors::node::NodeConfig::default().heartbeat_interval_ms,
    };
    Duration::from_millis(ms)
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
    if let Err(error) = crate::protocol::node_config(config.clone()).validate() {
        return ConfigOutcome::Failed { error };
    }
    match store.save(CONFIG, "worker.config_applied", &(version, config)).await {
        Ok(()) => ConfigOutcome::Applied,
        Err(e) => ConfigOutcome::Failed { error: e.to_string() },
    }
}
