//! The cluster edge: what the orchestrator does with requests that arrive over QUIC.
//! The transport (`cluster::orchestrator`) says who is asking; this maps each
//! request to the domain (membership, tasks) and the outcome back to the wire:
//! joins spend a token and issue a certificate, every request of a node is checked
//! against the node as it is now, and a connected node is pushed its configuration.

mod push;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::node::{
    JoinToken, Membership, MembershipError, NodeCert, NodeCommand, NodeError, NodeHandle, NodeState, Origin,
    TokenRefusal, membership::IssueCert,
};
use cluster::certs::{self, ClusterCa};
use cluster::orchestrator::{Inbound, Links, refused};
use cluster::proto::{Bootstrap, Capabilities, Request, Response, codes};
use cluster::token::{self, TokenClaims, TokenError};
use cluster::transport::TransportError;
use quinn::Connection;

use crate::dispatch::{DispatchError, Dispatcher};
use crate::protocol;

/// How long a node certificate is valid unless configured otherwise.
pub const NODE_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Everything the orchestrator needs to answer the cluster.
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

/// A node identified by its certificate, for the life of its connection.
pub struct NodePeer {
    node: NodeHandle,
    fingerprint: String,
    conn: Connection,
    /// The configuration push loop runs (started by the first Hello).
    pushing: AtomicBool,
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

    /// A certificate for `public_key`, issued now to `node_id`.
    fn issue(&self, node_id: &str, public_key: &[u8]) -> Result<(NodeCert, Vec<u8>), String> {
        let cert = self
            .ca
            .issue_node(node_id, public_key, SystemTime::now(), self.node_cert_lifetime)
            .map_err(|e| e.to_string())?;
        let record = NodeCert {
            fingerprint: certs::fingerprint(&cert.der),
            not_after_ms: millis(cert.not_after),
            retired: false,
        };
        Ok((record, cert.der))
    }

    async fn admit_join(
        self: &Arc<Self>,
        token: &str,
        public_key: Vec<u8>,
        capabilities: Capabilities,
    ) -> Result<actors::node::membership::Joined, MembershipError> {
        let claims = match token::verify(token, &self.token_key) {
            Err(TokenError::Forged) => return Err(MembershipError::Token(TokenRefusal::Forged)),
            Err(TokenError::Malformed) => return Err(MembershipError::Invalid("the join token is malformed".into())),
            Ok(claims) => claims,
        };
        let key_sha256 = certs::fingerprint(&public_key);
        let this = self.clone();
        let issue: IssueCert = Box::new(move |node_id: &str| this.issue(node_id, &public_key));
        self.membership.join(claims.id, key_sha256, protocol::capabilities(capabilities), issue).await
    }

    /// Every request is checked against the node as it is now: a removed node's
    /// certificates and certificates replaced by a renewal open nothing. A Hello with
    /// the newest certificate retires the older ones.
    async fn admit(&self, peer: &NodePeer, request: &Request) -> Result<(), Response> {
        if matches!(request, Request::Heartbeat { .. }) {
            return Ok(()); // the node actor admits a heartbeat as it records it
        }
        let node = &peer.node;
        let view = node.view().await.map_err(|e| node_refusal(&e))?;
        if view.node.state == NodeState::Removed {
            return Err(node_refusal(&MembershipError::Node(NodeError::Removed)));
        }
        if !view.node.accepts_cert(&peer.fingerprint) {
            tracing::warn!(node = %node.id, "a replaced certificate was presented; refused");
            return Err(refused(codes::CERT_REPLACED, "this certificate was replaced by a renewal; use the newest"));
        }
        if matches!(request, Request::Hello { .. }) {
            let used = NodeCommand::UseCert { fingerprint: peer.fingerprint.clone() };
            node.command(used, Origin::node(&node.id, "node.connect")).await.map_err(|e| node_refusal(&e))?;
        }
        Ok(())
    }

    async fn answer(&self, peer: &NodePeer, request: Request) -> Response {
        let node = &peer.node;
        match request {
            Request::Hello { capabilities } => match node.connect(protocol::capabilities(capabilities)).await {
                Ok(desired) => {
                    self.links.set(&node.id, peer.conn.clone());
                    if !peer.pushing.swap(true, Ordering::SeqCst) {
                        tokio::spawn(push::push_config(peer.conn.clone(), node.clone(), desired.clone()));
                    }
                    let config_version = desired.borrow().0;
                    Response::Welcome { node_id: node.id.clone(), config_version }
                }
                Err(e) => node_refusal(&e),
            },
            Request::Heartbeat { running } => match node.heartbeat(&peer.fingerprint).await {
                Ok(()) => {
                    if let Some(d) = self.dispatcher.get() {
                        d.running(&node.id, running);
                    }
                    Response::HeartbeatOk
                }
                Err(e) => node_refusal(&e),
            },
            Request::JobFinished { job_id, result } => self.finished(node, job_id, result).await,
            Request::RenewCert { public_key } => self.renew(node, &public_key).await,
            Request::Ping { sent_ns } => Response::Pong { sent_ns },
            Request::Join { .. } => refused(codes::BAD_REQUEST, "this node has already joined"),
        }
    }

    async fn finished(&self, node: &NodeHandle, job_id: String, result: cluster::proto::JobResult) -> Response {
        let Some(dispatcher) = self.dispatcher.get() else {
            return refused(codes::UNAVAILABLE, "this orchestrator does not run tasks");
        };
        match dispatcher.finished(&node.id, job_id, protocol::job_result(result)).await {
            Ok(()) => Response::Recorded,
            Err(e @ DispatchError::NotYours(_)) => refused(codes::NOT_YOURS, &e.to_string()),
            Err(e) => refused(codes::UNAVAILABLE, &e.to_string()),
        }
    }

    async fn renew(&self, node: &NodeHandle, public_key: &[u8]) -> Response {
        let (record, cert_der) = match self.issue(&node.id, public_key) {
            Ok(issued) => issued,
            Err(e) => return refused(codes::BAD_REQUEST, &e),
        };
        let not_after_ms = record.not_after_ms;
        match self.membership.cert_issued(node, record).await {
            Ok(_) => Response::Renewed { cert_der, not_after_ms },
            Err(e) => node_refusal(&e),
        }
    }
}

/// The edge the transport calls; held in an `Arc` so joins can issue certificates
/// from the membership actor.
struct Edge(Arc<OrchestratorCluster>);

impl Inbound for Edge {
    type Peer = NodePeer;

    async fn join(&self, token: String, public_key: Vec<u8>, capabilities: Capabilities) -> Response {
        let outcome = self.0.admit_join(&token, public_key, capabilities).await;
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
                ca_der: self.0.ca.cert_der().to_vec(),
                orchestrators: self.0.advertise.clone(),
                config_version: joined.config_version,
            }),
            Err(MembershipError::Token(r)) => refused(r.code(), &r.to_string()),
            Err(MembershipError::Invalid(m)) => refused(codes::BAD_REQUEST, &m),
            Err(e) => refused(codes::UNAVAILABLE, &e.to_string()),
        }
    }

    async fn identify(&self, fingerprint: &str, conn: &Connection) -> Option<NodePeer> {
        let node = self.0.membership.identify(fingerprint).await?;
        Some(NodePeer {
            node,
            fingerprint: fingerprint.to_owned(),
            conn: conn.clone(),
            pushing: AtomicBool::new(false),
        })
    }

    async fn request(&self, peer: &NodePeer, request: Request) -> Response {
        match self.0.admit(peer, &request).await {
            Ok(()) => self.0.answer(peer, request).await,
            Err(refusal) => refusal,
        }
    }

    fn closed(&self, peer: &NodePeer) {
        self.0.links.closed(&peer.node.id, &peer.conn);
    }
}

impl OrchestratorCluster {
    /// Serves the cluster on `endpoint` until it is closed.
    pub async fn serve(self: Arc<Self>, endpoint: quinn::Endpoint) {
        cluster::orchestrator::serve(endpoint, Arc::new(Edge(self))).await;
    }
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
