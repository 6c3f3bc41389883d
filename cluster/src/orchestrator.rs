//! The orchestrator's side of the cluster: admits joining workers (a token, no
//! certificate), then serves nodes over mutually authenticated connections, where
//! the certificate is the identity, and pushes each node its configuration.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::node::{
    Capabilities, ConfigAck, JoinToken, Membership, MembershipError, NodeCert, NodeError, NodeHandle, Origin,
    TokenRefusal,
};
use certs::ClusterCa;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::dispatch::{DispatchError, Dispatcher, Links};
use crate::proto::{Bootstrap, Push, PushReply, Request, Response, codes};
use crate::token::{self, TokenClaims, TokenError};
use crate::transport::{REQUEST_TIMEOUT, TransportError};
use crate::wire;

/// How long a node certificate is valid unless configured otherwise.
pub const NODE_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const PUSH_RETRY: Duration = Duration::from_secs(1);
/// Handshakes in progress plus connections without a certificate (joins) at once.
pub const MAX_UNAUTHENTICATED: usize = 64;

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Everything the orchestrator needs to run the cluster side.
pub struct OrchestratorCluster {
    pub membership: Membership,
    ca: Arc<ClusterCa>,
    token_key: Vec<u8>,
    /// QUIC addresses written into tokens.
    advertise: Vec<String>,
    node_cert_lifetime: Duration,
    /// Each node's live connection, for pushing jobs.
    pub links: Arc<Links>,
    dispatcher: OnceLock<Dispatcher>,
}

impl OrchestratorCluster {
    /// `token_key` signs bootstrap tokens; `advertise` is where workers should dial.
    pub fn new(membership: Membership, ca: Arc<ClusterCa>, token_key: Vec<u8>, advertise: Vec<String>) -> Self {
        OrchestratorCluster {
            membership,
            ca,
            token_key,
            advertise,
            node_cert_lifetime: NODE_CERT_LIFETIME,
            links: Arc::default(),
            dispatcher: OnceLock::new(),
        }
    }

    /// Routes job results and running-job lists from nodes to `dispatcher` (once).
    pub fn attach_dispatcher(&self, dispatcher: Dispatcher) {
        let _ = self.dispatcher.set(dispatcher);
    }

    /// Shorter-lived node certificates (tests of renewal).
    pub fn with_node_cert_lifetime(mut self, lifetime: Duration) -> Self {
        self.node_cert_lifetime = lifetime;
        self
    }

    /// The SHA-256 of the CA certificate, as tokens carry it.
    pub fn ca_fingerprint(&self) -> String {
        certs::fingerprint(self.ca.cert_der())
    }

    /// TLS for the listener, with a server certificate issued now.
    pub fn server_tls(&self) -> Result<rustls::ServerConfig, TransportError> {
        let now = SystemTime::now();
        let (cert, key) = self.ca.issue_server(now).map_err(|e| TransportError::Tls(e.to_string()))?;
        certs::server_config(self.ca.cert_der(), &cert, &key).map_err(|e| TransportError::Tls(e.to_string()))
    }

    /// A new bootstrap token: its record and the string to hand to the worker host.
    pub async fn create_token(
        &self,
        labels: BTreeMap<String, String>,
        uses: u32,
        ttl: Duration,
        origin: Origin,
    ) -> Result<(JoinToken, String), MembershipError> {
        let record = self.membership.create_token(labels, uses, ttl, origin).await?;
        let claims = TokenClaims {
            id: record.id.clone(),
            expires_ms: record.expires_ms,
            orchestrators: self.advertise.clone(),
            ca_sha256: self.ca_fingerprint(),
        };
        let token = token::sign(&claims, &self.token_key);
        Ok((record, token))
    }

    /// Accepts connections until the endpoint is closed. Handshakes and connections
    /// without a certificate share [`MAX_UNAUTHENTICATED`] slots; past that a new
    /// peer is refused before any TLS work is done for it.
    pub async fn serve(self: Arc<Self>, endpoint: Endpoint) {
        let unauthenticated = Arc::new(Semaphore::new(MAX_UNAUTHENTICATED));
        while let Some(incoming) = endpoint.accept().await {
            let Ok(permit) = unauthenticated.clone().try_acquire_owned() else {
                metrics::counter!("dispatch_cluster_connections_refused_total").increment(1);
                incoming.refuse();
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, incoming).await {
                    Ok(Ok(conn)) => this.connection(conn, permit).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "cluster handshake failed"),
                    Err(_) => tracing::debug!("cluster handshake timed out"),
                }
            });
        }
    }

    async fn connection(self: Arc<Self>, conn: Connection, permit: OwnedSemaphorePermit) {
        metrics::gauge!("dispatch_cluster_connections").increment(1.0);
        let fingerprint = peer_fingerprint(&conn);
        if fingerprint.is_some() {
            drop(permit);
        }
        match fingerprint {
            None => self.unauthenticated(&conn).await,
            Some(fingerprint) => match self.membership.identify(&fingerprint).await {
                Some(node) => self.node_connection(conn.clone(), node, fingerprint).await,
                None => refuse_next(&conn, codes::CERT_UNKNOWN, "this certificate was not issued to any node").await,
            },
        }
        metrics::gauge!("dispatch_cluster_connections").decrement(1.0);
    }

    /// Without a certificate the only thing a peer may do is join, once.
    async fn unauthenticated(&self, conn: &Connection) {
        let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(REQUEST_TIMEOUT, conn.accept_bi()).await else {
            return;
        };
        let response = match wire::read::<Request>(&mut recv).await {
            Ok(Request::Join { token, public_key, capabilities }) => self.join(&token, public_key, capabilities).await,
            Ok(_) => refused(codes::CERT_REQUIRED, "this request needs a cluster certificate; join with a token first"),
            Err(e) => refused(codes::BAD_REQUEST, &e.to_string()),
        };
        answer_and_close(conn, &mut send, &response).await;
    }

    async fn join(&self, token: &str, public_key: Vec<u8>, capabilities: Capabilities) -> Response {
        let outcome = match token::verify(token, &self.token_key) {
            Err(TokenError::Forged) => Err(MembershipError::Token(TokenRefusal::Forged)),
            Err(TokenError::Malformed) => Err(MembershipError::Invalid("the join token is malformed".into())),
            Ok(claims) => {
                let key_sha256 = certs::fingerprint(&public_key);
                let (ca, lifetime) = (self.ca.clone(), self.node_cert_lifetime);
                let issue: actors::node::membership::IssueCert = Box::new(move |node_id: &str| {
                    let now = SystemTime::now();
                    let cert = ca.issue_node(node_id, &public_key, now, lifetime).map_err(|e| e.to_string())?;
                    let record = NodeCert {
                        fingerprint: certs::fingerprint(&cert.der),
                        not_after_ms: millis(cert.not_after),
                        retired: false,
                    };
                    Ok((record, cert.der))
                });
                self.membership.join(claims.id, key_sha256, capabilities, issue).await
            }
        };
        let label = match &outcome {
            Ok(_) => "joined",
            Err(MembershipError::Token(r)) => r.code(),
            Err(_) => "error",
        };
        metrics::counter!("dispatch_node_joins_total", "outcome" => label).increment(1);
        match outcome {
            Ok(joined) => Response::Joined(Bootstrap {
                node_id: joined.node_id,
                cert_der: joined.cert_der,
                not_after_ms: joined.cert.not_after_ms,
                ca_der: self.ca.cert_der().to_vec(),
                orchestrators: self.advertise.clone(),
                config_version: joined.config_version,
            }),
            Err(MembershipError::Token(r)) => refused(r.code(), &r.to_string()),
            Err(MembershipError::Invalid(m)) => refused(codes::BAD_REQUEST, &m),
            Err(e) => refused(codes::UNAVAILABLE, &e.to_string()),
        }
    }

    async fn node_connection(self: Arc<Self>, conn: Connection, node: NodeHandle, fingerprint: String) {
        let pushing = Arc::new(AtomicBool::new(false));
        let fingerprint = Arc::new(fingerprint);
        while let Ok((send, recv)) = conn.accept_bi().await {
            let (this, conn, node, pushing) = (self.clone(), conn.clone(), node.clone(), pushing.clone());
            let fingerprint = fingerprint.clone();
            tokio::spawn(async move { this.node_request(conn, node, &fingerprint, send, recv, pushing).await });
        }
        self.links.closed(&node.id, &conn);
    }

    async fn node_request(
        &self,
        conn: Connection,
        node: NodeHandle,
        fingerprint: &str,
        mut send: SendStream,
        mut recv: RecvStream,
        pushing: Arc<AtomicBool>,
    ) {
        let request = match wire::read::<Request>(&mut recv).await {
            Ok(r) => r,
            Err(e) => {
                let _ = wire::write(&mut send, &refused(codes::BAD_REQUEST, &e.to_string())).await;
                let _ = send.finish();
                return;
            }
        };
        metrics::counter!("dispatch_cluster_requests_total", "request" => request.name()).increment(1);
        let response = match self.admit(&node, fingerprint, &request).await {
            Ok(()) => self.answer(&conn, &node, request, &pushing).await,
            Err(refusal) => refusal,
        };
        let last = matches!(&response, Response::Refused { code, .. }
            if code == codes::NODE_REMOVED || code == codes::CERT_REPLACED);
        if last {
            answer_and_close(&conn, &mut send, &response).await;
        } else {
            let _ = wire::write(&mut send, &response).await;
            let _ = send.finish();
        }
    }

    /// Every request is checked against the node as it is now: a removed node's
    /// certificates and certificates replaced by a renewal open nothing. A Hello with
    /// the newest certificate retires the older ones.
    async fn admit(&self, node: &NodeHandle, fingerprint: &str, request: &Request) -> Result<(), Response> {
        let view = node.view().await.map_err(|e| node_refusal(&e))?;
        if view.node.state == actors::node::NodeState::Removed {
            return Err(node_refusal(&MembershipError::Node(NodeError::Removed)));
        }
        if !view.node.accepts_cert(fingerprint) {
            tracing::warn!(node = %node.id, "a replaced certificate was presented; refused");
            return Err(refused(codes::CERT_REPLACED, "this certificate was replaced by a renewal; use the newest"));
        }
        if matches!(request, Request::Hello { .. }) {
            let used = actors::node::NodeCommand::UseCert { fingerprint: fingerprint.to_owned() };
            node.command(used, Origin::node(&node.id, "node.connect")).await.map_err(|e| node_refusal(&e))?;
        }
        Ok(())
    }

    async fn answer(&self, conn: &Connection, node: &NodeHandle, request: Request, pushing: &AtomicBool) -> Response {
        match request {
            Request::Hello { capabilities } => match node.connect(capabilities).await {
                Ok(desired) => {
                    self.links.set(&node.id, conn.clone());
                    if !pushing.swap(true, Ordering::SeqCst) {
                        tokio::spawn(push_config(conn.clone(), node.clone(), desired.clone()));
                    }
                    let config_version = desired.borrow().0;
                    Response::Welcome { node_id: node.id.clone(), config_version }
                }
                Err(e) => node_refusal(&e),
            },
            Request::Heartbeat { running } => match node.heartbeat().await {
                Ok(()) => {
                    if let Some(d) = self.dispatcher.get() {
                        d.running(&node.id, running);
                    }
                    Response::HeartbeatOk
                }
                Err(e) => node_refusal(&e),
            },
            Request::JobFinished { job_id, result } => match self.dispatcher.get() {
                Some(d) => match d.finished(&node.id, job_id, result).await {
                    Ok(()) => Response::Recorded,
                    Err(e @ DispatchError::NotYours(_)) => refused(codes::NOT_YOURS, &e.to_string()),
                    Err(e) => refused(codes::UNAVAILABLE, &e.to_string()),
                },
                None => refused(codes::UNAVAILABLE, "this orchestrator does not run tasks"),
            },
            Request::RenewCert { public_key } => self.renew(node, &public_key).await,
            Request::Ping { sent_ns } => Response::Pong { sent_ns },
            Request::Join { .. } => refused(codes::BAD_REQUEST, "this node has already joined"),
        }
    }

    async fn renew(&self, node: &NodeHandle, public_key: &[u8]) -> Response {
        let now = SystemTime::now();
        let cert = match self.ca.issue_node(&node.id, public_key, now, self.node_cert_lifetime) {
            Ok(c) => c,
            Err(e) => return refused(codes::BAD_REQUEST, &e.to_string()),
        };
        let record = NodeCert {
            fingerprint: certs::fingerprint(&cert.der),
            not_after_ms: millis(cert.not_after),
            retired: false,
        };
        let not_after_ms = record.not_after_ms;
        match self.membership.cert_issued(node, record).await {
            Ok(_) => Response::Renewed { cert_der: cert.der, not_after_ms },
            Err(e) => node_refusal(&e),
        }
    }
}

/// Delivers the node's configuration whenever it is newer than what the node
/// acknowledged, retrying until the node answers or the connection ends.
async fn push_config(
    conn: Connection,
    node: NodeHandle,
    mut desired: watch::Receiver<(u64, actors::node::NodeConfig)>,
) {
    loop {
        let (version, config) = desired.borrow_and_update().clone();
        let pending = node.view().await.map(|v| v.node.config_pending() && v.node.config_version == version);
        match pending {
            Ok(true) => match push_once(&conn, version, config).await {
                Ok(ack) => {
                    tracing::info!(node = %node.id, version, outcome = ?ack.outcome, "configuration acknowledged");
                    if let Err(e) = node.acknowledge(ack).await {
                        tracing::warn!(node = %node.id, error = %e, "acknowledgement not recorded");
                    }
                }
                Err(e) => {
                    if conn.close_reason().is_some() {
                        return;
                    }
                    tracing::debug!(node = %node.id, version, error = %e, "configuration push failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(PUSH_RETRY) => continue,
                        _ = conn.closed() => return,
                    }
                }
            },
            Ok(false) => {}
            Err(_) => return,
        }
        tokio::select! {
            changed = desired.changed() => if changed.is_err() { return },
            _ = conn.closed() => return,
        }
    }
}

async fn push_once(
    conn: &Connection,
    version: u64,
    config: actors::node::NodeConfig,
) -> Result<ConfigAck, TransportError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| wire::WireError::Stream(e.to_string()))?;
        wire::write(&mut send, &Push::ApplyConfig { version, config }).await?;
        send.finish().map_err(|e| wire::WireError::Stream(e.to_string()))?;
        match wire::read::<PushReply>(&mut recv).await? {
            PushReply::ConfigAck(ack) => Ok::<_, TransportError>(ack),
            other => Err(wire::WireError::Decode(format!("expected a configuration answer, got {other:?}")).into()),
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| TransportError::Timeout(REQUEST_TIMEOUT))?
}

fn refused(code: &str, message: &str) -> Response {
    Response::Refused { code: code.into(), message: message.into() }
}

fn node_refusal(e: &MembershipError) -> Response {
    match e {
        MembershipError::Node(NodeError::Removed) => {
            refused(codes::NODE_REMOVED, "this node was removed from the cluster")
        }
        MembershipError::Node(e @ NodeError::CertReplaced) => refused(codes::CERT_REPLACED, &e.to_string()),
        other => refused(codes::UNAVAILABLE, &other.to_string()),
    }
}

/// Answers the peer's next request with a refusal, then closes the connection.
async fn refuse_next(conn: &Connection, code: &str, message: &str) {
    tracing::warn!(code, remote = %conn.remote_address(), "cluster connection refused");
    if let Ok(Ok((mut send, _recv))) = tokio::time::timeout(REQUEST_TIMEOUT, conn.accept_bi()).await {
        answer_and_close(conn, &mut send, &refused(code, message)).await;
    } else {
        conn.close(1u32.into(), code.as_bytes());
    }
}

/// Writes the last answer, waits (bounded) until the peer has it, then closes.
async fn answer_and_close(conn: &Connection, send: &mut SendStream, response: &Response) {
    let _ = wire::write(send, response).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, send.stopped()).await;
    let code = match response {
        Response::Refused { code, .. } => code.as_str(),
        _ => "done",
    };
    conn.close(0u32.into(), code.as_bytes());
}

/// SHA-256 of the client certificate the peer presented, if any.
fn peer_fingerprint(conn: &Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    chain.first().map(|c| certs::fingerprint(c))
}
