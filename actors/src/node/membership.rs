//! The membership: the supervisor of the node actors (`node_actor.rs`). It admits
//! new nodes with a bootstrap token, finds a node by its certificate, keeps the
//! tokens, and restarts a node actor that fails, from the log. Every change runs
//! through the kernel's command path.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use storage::Log;
use tokio::sync::watch;

use super::entity::{JoinTokens, NODES, Nodes, TOKENS};
use super::lifecycle::{Capabilities, ConfigAck, Node, NodeCert, NodeCommand, NodeError};
use super::node_actor::{NodeActor, NodeMsg};
use super::token::{self, JoinToken, TokenCommand, TokenRefusal};
pub use super::view::{DesiredConfig, Joined, MembershipConfig, MembershipError, NodeView};
use crate::kernel::{self, Failure, Kernel, Loaded, Request};

pub use crate::kernel::Origin;

impl From<Failure<JoinTokens>> for MembershipError {
    fn from(f: Failure<JoinTokens>) -> Self {
        match f {
            Failure::Rejected(e) => MembershipError::Token(e),
            Failure::KeyReused => MembershipError::Invalid(f.to_string()),
            Failure::Unavailable(why) => MembershipError::Storage(why),
        }
    }
}

fn storage_error(e: impl std::fmt::Display) -> MembershipError {
    MembershipError::Storage(e.to_string())
}

/// Every node as stored in the log (durable state, as it would be recovered).
pub fn load_nodes(log: &Log) -> Result<Vec<Node>, MembershipError> {
    let mut nodes = Vec::new();
    for (id, _) in log.index_scan(NODES, "", usize::MAX).map_err(storage_error)? {
        nodes.extend(kernel::load::<Nodes>(log, &id).map_err(storage_error)?.state);
    }
    Ok(nodes)
}

/// Every bootstrap token as stored, with its stream's last sequence number.
pub fn load_tokens(log: &Log) -> Result<Vec<(JoinToken, u64)>, MembershipError> {
    let mut tokens = Vec::new();
    for (id, _) in log.index_scan(TOKENS, "", usize::MAX).map_err(storage_error)? {
        let loaded = kernel::load::<JoinTokens>(log, &id).map_err(storage_error)?;
        tokens.extend(loaded.state.map(|t| (t, loaded.seq)));
    }
    Ok(tokens)
}

/// Signs a certificate for the new node id: the membership does not hold the CA.
pub type IssueCert = Box<dyn FnOnce(&str) -> Result<(NodeCert, Vec<u8>), String> + Send>;

// ---------------------------------------------------------------- supervisor

enum RegistryMsg {
    CreateToken {
        labels: BTreeMap<String, String>,
        uses: u32,
        ttl: Duration,
        origin: Origin,
        reply: RpcReplyPort<Result<JoinToken, MembershipError>>,
    },
    Tokens(RpcReplyPort<Vec<JoinToken>>),
    RevokeToken {
        id: String,
        origin: Origin,
        reply: RpcReplyPort<Result<JoinToken, MembershipError>>,
    },
    Join {
        token_id: String,
        key_sha256: String,
        capabilities: Capabilities,
        issue: IssueCert,
        reply: RpcReplyPort<Result<Joined, MembershipError>>,
    },
    Identify {
        fingerprint: String,
        reply: RpcReplyPort<Option<NodeHandle>>,
    },
    Lookup {
        id: String,
        reply: RpcReplyPort<Option<NodeHandle>>,
    },
    All(RpcReplyPort<Vec<NodeHandle>>),
    CertIssued {
        id: String,
        fingerprint: String,
    },
}

struct Registry {
    kernel: Kernel,
    config: MembershipConfig,
}

struct RegistryState {
    nodes: BTreeMap<String, ActorRef<NodeMsg>>,
    by_actor: HashMap<ractor::ActorId, String>,
    by_cert: HashMap<String, String>,
    /// (token id, key hash) → node, so a retried join finds its node.
    by_key: HashMap<(String, String), String>,
    tokens: BTreeMap<String, Loaded<JoinTokens>>,
    next_node: u64,
}

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<RegistryMsg>, _: ()) -> Result<RegistryState, ActorProcessingErr> {
        let mut st = RegistryState {
            nodes: BTreeMap::new(),
            by_actor: HashMap::new(),
            by_cert: HashMap::new(),
            by_key: HashMap::new(),
            tokens: BTreeMap::new(),
            next_node: 1,
        };
        let log = &self.kernel.log;
        for (token, seq) in load_tokens(log)? {
            st.tokens.insert(token.id.clone(), Loaded { state: Some(token), seq });
        }
        for node in load_nodes(log)? {
            let id = node.id.clone();
            if let Some(n) = id.strip_prefix("node-").and_then(|n| n.parse::<u64>().ok()) {
                st.next_node = st.next_node.max(n + 1);
            }
            for cert in &node.certs {
                st.by_cert.insert(cert.fingerprint.clone(), id.clone());
            }
            st.by_key.insert((node.token_id.clone(), node.key_sha256.clone()), id.clone());
            self.spawn(&me, &mut st, id).await?;
        }
        report_states(&st);
        Ok(st)
    }

    async fn handle(
        &self,
        me: ActorRef<RegistryMsg>,
        msg: RegistryMsg,
        st: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::CreateToken { labels, uses, ttl, origin, reply } => {
                let _ = reply.send(self.create_token(st, labels, uses, ttl, origin).await);
            }
            RegistryMsg::Tokens(reply) => {
                let _ = reply.send(st.tokens.values().filter_map(|t| t.state.clone()).collect());
            }
            RegistryMsg::RevokeToken { id, origin, reply } => {
                let _ = reply.send(self.token_command(st, &id, TokenCommand::Revoke, origin).await);
            }
            RegistryMsg::Join { token_id, key_sha256, capabilities, issue, reply } => {
                let result = match st.by_key.get(&(token_id.clone(), key_sha256.clone())).cloned() {
                    Some(id) => self.rejoin(st, &id, issue).await,
                    None => self.join(&me, st, token_id, key_sha256, capabilities, issue).await,
                };
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "join refused");
                }
                let _ = reply.send(result);
            }
            RegistryMsg::Identify { fingerprint, reply } => {
                let handle = st.by_cert.get(&fingerprint).and_then(|id| st.handle(id));
                let _ = reply.send(handle);
            }
            RegistryMsg::Lookup { id, reply } => {
                let _ = reply.send(st.handle(&id));
            }
            RegistryMsg::All(reply) => {
                let _ = reply.send(st.nodes.keys().filter_map(|id| st.handle(id)).collect());
            }
            RegistryMsg::CertIssued { id, fingerprint } => {
                st.by_cert.insert(fingerprint, id);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<RegistryMsg>,
        event: SupervisionEvent,
        st: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event
            && let Some(id) = st.by_actor.remove(&cell.get_id())
        {
            tracing::warn!(node = %id, error = %err, "node actor failed; restarting from the log");
            metrics::counter!("dispatch_actor_restarts_total", "kind" => "node").increment(1);
            st.nodes.remove(&id);
            self.spawn(&me, st, id).await?;
        }
        Ok(())
    }
}

impl RegistryState {
    fn handle(&self, id: &str) -> Option<NodeHandle> {
        self.nodes.get(id).map(|actor| NodeHandle { id: id.to_owned(), actor: actor.clone() })
    }
}

fn report_states(st: &RegistryState) {
    metrics::gauge!("dispatch_join_tokens").set(st.tokens.len() as f64);
}

impl Registry {
    async fn spawn(
        &self,
        me: &ActorRef<RegistryMsg>,
        st: &mut RegistryState,
        id: String,
    ) -> Result<(), ActorProcessingErr> {
        let actor = NodeActor { kernel: self.kernel.clone(), config: self.config.clone() };
        let (actor, _) = Actor::spawn_linked(None, actor, id.clone(), me.get_cell()).await?;
        st.by_actor.insert(actor.get_id(), id.clone());
        st.nodes.insert(id, actor);
        metrics::gauge!("dispatch_live_actors", "kind" => "node").set(st.nodes.len() as f64);
        Ok(())
    }

    async fn create_token(
        &self,
        st: &mut RegistryState,
        labels: BTreeMap<String, String>,
        uses: u32,
        ttl: Duration,
        origin: Origin,
    ) -> Result<JoinToken, MembershipError> {
        if uses == 0 || ttl.is_zero() {
            return Err(MembershipError::Invalid("a token needs at least one use and a positive ttl".into()));
        }
        let id = self.kernel.ids.next_id().simple().to_string();
        let command = TokenCommand::Create {
            labels,
            uses_allowed: uses,
            expires_ms: self.kernel.clock.now_ms() + ttl.as_millis() as i64,
            created_by: origin.actor.id.clone(),
        };
        let mut loaded = Loaded { state: None, seq: 0 };
        let token = kernel::execute(&self.kernel, &(), &mut loaded, &Request::new(id.clone(), command, origin)).await?;
        st.tokens.insert(id, loaded);
        report_states(st);
        Ok(token.state)
    }

    async fn token_command(
        &self,
        st: &mut RegistryState,
        id: &str,
        command: TokenCommand,
        origin: Origin,
    ) -> Result<JoinToken, MembershipError> {
        let loaded = st.tokens.get_mut(id).ok_or(TokenRefusal::Unknown)?;
        let request = Request::new(id.to_owned(), command, origin);
        Ok(kernel::execute(&self.kernel, &(), loaded, &request).await?.state)
    }

    /// Uses the token (durably) before the node exists, so a crash in between can
    /// only waste a use, never admit a node past its token's limit.
    async fn join(
        &self,
        me: &ActorRef<RegistryMsg>,
        st: &mut RegistryState,
        token_id: String,
        key_sha256: String,
        capabilities: Capabilities,
        issue: IssueCert,
    ) -> Result<Joined, MembershipError> {
        let token = st.tokens.get(&token_id).and_then(|t| t.state.clone());
        token::check_use(token.as_ref(), self.kernel.clock.now_ms())?;
        let token_labels = token.map(|t| t.labels).unwrap_or_default();
        let id = format!("node-{}", st.next_node);
        let (cert, cert_der) = issue(&id).map_err(MembershipError::Certificate)?;
        let origin = Origin::system("node.join");
        self.token_command(st, &token_id, TokenCommand::Use { node_id: id.clone() }, origin.clone()).await?;
        st.next_node += 1;
        st.by_key.insert((token_id.clone(), key_sha256.clone()), id.clone());
        let command = NodeCommand::Join {
            capabilities,
            token_id,
            key_sha256,
            token_labels,
            cert: cert.clone(),
            config: self.config.default_config.clone(),
        };
        let mut loaded = Loaded { state: None, seq: 0 };
        let request = Request::<Nodes>::new(id.clone(), command, origin);
        let node = kernel::execute(&self.kernel, &(), &mut loaded, &request).await?;
        tracing::info!(node = %id, "node joined");
        st.by_cert.insert(cert.fingerprint.clone(), id.clone());
        self.spawn(me, st, id.clone()).await.map_err(|e| MembershipError::Storage(e.to_string()))?;
        let config_version = node.state.config_version;
        Ok(Joined { node_id: id, cert_der, cert, config_version })
    }
}

impl Registry {
    /// The same token and key again: the first answer was lost on the way back.
    /// The node gets a fresh certificate; no second node, no second use of the token.
    async fn rejoin(&self, st: &mut RegistryState, id: &str, issue: IssueCert) -> Result<Joined, MembershipError> {
        let node = st.handle(id).ok_or(NodeError::NotFound)?;
        let (cert, cert_der) = issue(id).map_err(MembershipError::Certificate)?;
        let n = node.command(NodeCommand::IssueCert { cert: cert.clone() }, Origin::system("node.join")).await?;
        st.by_cert.insert(cert.fingerprint.clone(), id.to_owned());
        tracing::info!(node = %id, "join retried; same node, new certificate");
        Ok(Joined { node_id: id.to_owned(), cert_der, cert, config_version: n.config_version })
    }
}

// ---------------------------------------------------------------- handles

/// The orchestrator's membership: a handle to the node supervisor. Clone freely.
#[derive(Clone)]
pub struct Membership {
    registry: ActorRef<RegistryMsg>,
}

/// One node's actor, as found by id or certificate.
#[derive(Clone)]
pub struct NodeHandle {
    pub id: String,
    actor: ActorRef<NodeMsg>,
}

fn gone<T>(_: T) -> MembershipError {
    MembershipError::Unavailable
}

impl Membership {
    /// Loads every node and token from the log and starts their actors.
    pub async fn start(kernel: Kernel, config: MembershipConfig) -> Result<Self, MembershipError> {
        let (registry, _) = Actor::spawn(None, Registry { kernel, config }, ())
            .await
            .map_err(|e| MembershipError::Storage(e.to_string()))?;
        Ok(Membership { registry })
    }

    /// Stops the supervisor and every node actor.
    pub fn stop(&self) {
        self.registry.stop_children(None);
        self.registry.stop(None);
    }

    /// A new bootstrap token record (the caller signs the token string).
    pub async fn create_token(
        &self,
        labels: BTreeMap<String, String>,
        uses: u32,
        ttl: Duration,
        origin: Origin,
    ) -> Result<JoinToken, MembershipError> {
        ractor::call!(self.registry, |reply| RegistryMsg::CreateToken { labels, uses, ttl, origin, reply })
            .map_err(gone)?
    }

    /// Every token, live or not.
    pub async fn tokens(&self) -> Result<Vec<JoinToken>, MembershipError> {
        ractor::call!(self.registry, RegistryMsg::Tokens).map_err(gone)
    }

    /// Revokes a token: nothing more can join with it.
    pub async fn revoke_token(&self, id: &str, origin: Origin) -> Result<JoinToken, MembershipError> {
        let id = id.to_owned();
        ractor::call!(self.registry, |reply| RegistryMsg::RevokeToken { id, origin, reply }).map_err(gone)?
    }

    /// Admits a node with a token whose signature the caller has verified. The
    /// same token with the same key (a retry) answers with the same node.
    pub async fn join(
        &self,
        token_id: String,
        key_sha256: String,
        capabilities: Capabilities,
        issue: IssueCert,
    ) -> Result<Joined, MembershipError> {
        ractor::call!(self.registry, |reply| RegistryMsg::Join { token_id, key_sha256, capabilities, issue, reply })
            .map_err(gone)?
    }

    /// The node a certificate (by fingerprint) was issued to.
    pub async fn identify(&self, fingerprint: &str) -> Option<NodeHandle> {
        let fingerprint = fingerprint.to_owned();
        ractor::call!(self.registry, |reply| RegistryMsg::Identify { fingerprint, reply }).ok().flatten()
    }

    /// A node by id.
    pub async fn lookup(&self, id: &str) -> Option<NodeHandle> {
        let id = id.to_owned();
        ractor::call!(self.registry, |reply| RegistryMsg::Lookup { id, reply }).ok().flatten()
    }

    /// Every node, in id order.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, MembershipError> {
        let handles = ractor::call!(self.registry, RegistryMsg::All).map_err(gone)?;
        let mut views = Vec::with_capacity(handles.len());
        for h in handles {
            views.push(h.view().await?);
        }
        Ok(views)
    }

    /// Runs an operator's command on a node.
    pub async fn command(&self, id: &str, command: NodeCommand, origin: Origin) -> Result<Node, MembershipError> {
        let node = self.lookup(id).await.ok_or(NodeError::NotFound)?;
        node.command(command, origin).await
    }

    /// Records a renewed certificate so the node is recognised by it.
    pub async fn cert_issued(&self, node: &NodeHandle, cert: NodeCert) -> Result<Node, MembershipError> {
        let fingerprint = cert.fingerprint.clone();
        let n = node.command(NodeCommand::IssueCert { cert }, Origin::node(&node.id, "node.renew_cert")).await?;
        self.registry.send_message(RegistryMsg::CertIssued { id: node.id.clone(), fingerprint }).map_err(gone)?;
        Ok(n)
    }
}

impl NodeHandle {
    /// Runs a command on this node.
    pub async fn command(&self, command: NodeCommand, origin: Origin) -> Result<Node, MembershipError> {
        ractor::call!(self.actor, |reply| NodeMsg::Command {
            command: Box::new(command),
            origin: Box::new(origin),
            reply
        })
        .map_err(gone)?
    }

    /// The node opened an authenticated connection with these capabilities; returns
    /// the configuration stream its connection must deliver.
    pub async fn connect(&self, capabilities: Capabilities) -> Result<watch::Receiver<DesiredConfig>, MembershipError> {
        self.command(NodeCommand::Connect { capabilities }, Origin::node(&self.id, "node.connect")).await?;
        ractor::call!(self.actor, NodeMsg::Subscribe).map_err(gone)
    }

    /// The node is alive, on a connection with the certificate `fingerprint`. Fails
    /// when the node was removed or that certificate was replaced by a renewal.
    pub async fn heartbeat(&self, fingerprint: &str) -> Result<(), MembershipError> {
        let fingerprint = fingerprint.to_owned();
        ractor::call!(self.actor, |reply| NodeMsg::Heartbeat { fingerprint, reply }).map_err(gone)?
    }

    /// The node answered a configuration version.
    pub async fn acknowledge(&self, ack: ConfigAck) -> Result<Node, MembershipError> {
        self.command(NodeCommand::AcknowledgeConfig { ack }, Origin::node(&self.id, "node.config_ack")).await
    }

    /// The node and when it was last heard from.
    pub async fn view(&self) -> Result<NodeView, MembershipError> {
        ractor::call!(self.actor, NodeMsg::Get).map_err(gone)
    }
}
