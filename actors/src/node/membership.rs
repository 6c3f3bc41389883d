//! The node actors and their supervisor. One actor per joined node keeps its state,
//! notices silence (UNREACHABLE, then LOST) on its own timer, and publishes the
//! configuration its connection must deliver. The supervisor (the membership) admits
//! new nodes with a bootstrap token, finds a node by its certificate, and restarts a
//! node actor that fails, from the log.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use storage::{Append, IndexOp, Log, LogWriter, NewEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use super::lifecycle::{
    self, Capabilities, ConfigAck, Node, NodeCert, NodeCommand, NodeConfig, NodeError, NodeEvent, NodeState,
};
use super::token::{self, JoinToken, TokenEvent, TokenRefusal};

const NODES: &str = "nodes";
const TOKENS: &str = "join_tokens";

fn node_stream(id: &str) -> String {
    format!("node/{id}")
}

fn token_stream(id: &str) -> String {
    format!("join-token/{id}")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub use crate::kernel::Origin;

/// A log event caused by `origin`, stamped now.
fn stamped(
    origin: &Origin,
    kind: &str,
    states: (Option<&str>, Option<&str>),
    payload: &impl Serialize,
) -> Result<NewEvent, MembershipError> {
    origin
        .event((uuid::Uuid::now_v7(), now_ms()), kind, states, payload)
        .map_err(|e| MembershipError::Storage(e.to_string()))
}

/// Why a membership request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Token(#[from] TokenRefusal),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("could not issue the node certificate: {0}")]
    Certificate(String),
    #[error("storage unavailable: {0}")]
    Storage(String),
    #[error("membership unavailable")]
    Unavailable,
}

/// Silence thresholds, in missed heartbeats of the node's own interval.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub unreachable_after_beats: u32,
    pub lost_after_beats: u32,
    /// Configuration a node gets when it joins.
    pub default_config: NodeConfig,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig { unreachable_after_beats: 3, lost_after_beats: 12, default_config: NodeConfig::default() }
    }
}

/// A node and how long ago it was last heard from (None: not since this orchestrator started).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    pub last_seen_ms_ago: Option<u64>,
}

/// What a successful join returns to the worker.
#[derive(Debug, Clone)]
pub struct Joined {
    pub node_id: String,
    pub cert_der: Vec<u8>,
    pub cert: NodeCert,
    pub config_version: u64,
}

/// Signs a certificate for the new node id: the membership does not hold the CA.
pub type IssueCert = Box<dyn FnOnce(&str) -> Result<(NodeCert, Vec<u8>), String> + Send>;

/// Configuration version and contents, as published to the node's connection.
pub type DesiredConfig = (u64, NodeConfig);

// ---------------------------------------------------------------- node actor

enum NodeMsg {
    Command {
        command: Box<NodeCommand>,
        origin: Origin,
        reply: RpcReplyPort<Result<Node, MembershipError>>,
    },
    /// The node is alive; answers whether it may stay connected.
    Heartbeat(RpcReplyPort<Result<(), MembershipError>>),
    Subscribe(RpcReplyPort<watch::Receiver<DesiredConfig>>),
    Get(RpcReplyPort<NodeView>),
    Tick,
}

struct NodeActor {
    log: Log,
    writer: LogWriter,
    config: MembershipConfig,
}

struct NodeActorState {
    node: Node,
    seq: u64,
    last_seen: Option<Instant>,
    started: Instant,
    desired: watch::Sender<DesiredConfig>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    tick_every: Duration,
}

fn load_node(log: &Log, id: &str) -> Result<Option<(Node, u64)>, MembershipError> {
    let records = log.read_stream(&node_stream(id), 0).map_err(|e| MembershipError::Storage(e.to_string()))?;
    let mut node = None;
    let mut seq = 0;
    for r in records {
        let event: NodeEvent = serde_json::from_slice(&r.payload)
            .map_err(|e| MembershipError::Storage(format!("node {id} seq {}: {e}", r.seq)))?;
        node = lifecycle::apply(node, id, r.time_ms, &event);
        seq = r.seq;
    }
    Ok(node.map(|n| (n, seq)))
}

/// Every node as stored in the log (durable state, as it would be recovered).
pub fn load_nodes(log: &Log) -> Result<Vec<Node>, MembershipError> {
    let ids = log.index_scan(NODES, "", usize::MAX).map_err(|e| MembershipError::Storage(e.to_string()))?;
    let mut nodes = Vec::new();
    for (id, _) in ids {
        if let Some((node, _)) = load_node(log, &id)? {
            nodes.push(node);
        }
    }
    Ok(nodes)
}

/// Every bootstrap token as stored, with its stream's last sequence number.
pub fn load_tokens(log: &Log) -> Result<Vec<(JoinToken, u64)>, MembershipError> {
    let storage = |e: &dyn std::fmt::Display| MembershipError::Storage(e.to_string());
    let mut tokens = Vec::new();
    for (id, _) in log.index_scan(TOKENS, "", usize::MAX).map_err(|e| storage(&e))? {
        let mut token = None;
        let mut seq = 0;
        for r in log.read_stream(&token_stream(&id), 0).map_err(|e| storage(&e))? {
            let event: TokenEvent = serde_json::from_slice(&r.payload).map_err(|e| storage(&e))?;
            token = token::apply(token, &id, r.time_ms, &event);
            seq = r.seq;
        }
        if let Some(t) = token {
            tokens.push((t, seq));
        }
    }
    Ok(tokens)
}

/// A node's stored events, oldest first.
pub fn history(log: &Log, id: &str) -> Result<Vec<storage::EventRecord>, MembershipError> {
    log.read_stream(&node_stream(id), 0).map_err(|e| MembershipError::Storage(e.to_string()))
}

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = NodeActorState;
    type Arguments = String;

    async fn pre_start(&self, me: ActorRef<NodeMsg>, id: String) -> Result<NodeActorState, ActorProcessingErr> {
        let (node, seq) = load_node(&self.log, &id)?.ok_or_else(|| format!("node {id} has no events"))?;
        let (desired, _) = watch::channel((node.config_version, node.config.clone()));
        let mut st = NodeActorState {
            node,
            seq,
            last_seen: None,
            started: Instant::now(),
            desired,
            ticker: None,
            tick_every: Duration::ZERO,
        };
        st.retime(&me);
        count_state(st.node.state, 1.0);
        Ok(st)
    }

    async fn post_stop(&self, _me: ActorRef<NodeMsg>, st: &mut NodeActorState) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        count_state(st.node.state, -1.0);
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<NodeMsg>,
        msg: NodeMsg,
        st: &mut NodeActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Command { command, origin, reply } => {
                if matches!(*command, NodeCommand::Connect { .. }) {
                    st.last_seen = Some(Instant::now());
                }
                let result = self.run(st, &command, &origin).await;
                st.retime(&me);
                let _ = reply.send(result);
            }
            NodeMsg::Heartbeat(reply) => {
                st.last_seen = Some(Instant::now());
                let result = match st.node.state {
                    NodeState::Removed => Err(NodeError::Removed.into()),
                    NodeState::Unreachable | NodeState::Lost => {
                        // The same connection came back (a partition healed).
                        let back = NodeCommand::Connect { capabilities: st.node.capabilities.clone() };
                        self.run(st, &back, &Origin::node(&st.node.id, "node.heartbeat")).await.map(|_| ())
                    }
                    _ => Ok(()),
                };
                metrics::counter!("dispatch_node_heartbeats_total").increment(1);
                let _ = reply.send(result);
            }
            NodeMsg::Subscribe(reply) => {
                let _ = reply.send(st.desired.subscribe());
            }
            NodeMsg::Get(reply) => {
                let last_seen_ms_ago = st.last_seen.map(|t| t.elapsed().as_millis() as u64);
                let _ = reply.send(NodeView { node: st.node.clone(), last_seen_ms_ago });
            }
            NodeMsg::Tick => {
                let interval = st.node.config.heartbeat_interval_ms;
                let silent_ms = st.last_seen.unwrap_or(st.started).elapsed().as_millis() as u64;
                let check = NodeCommand::CheckSilence {
                    silent_ms,
                    unreachable_after_ms: interval * u64::from(self.config.unreachable_after_beats),
                    lost_after_ms: interval * u64::from(self.config.lost_after_beats),
                };
                if let Err(e) = self.run(st, &check, &Origin::system("node.heartbeat_timeout")).await {
                    tracing::warn!(node = %st.node.id, error = %e, "silence check not recorded");
                }
            }
        }
        Ok(())
    }
}

impl NodeActor {
    /// decide → append (fsynced) → apply; the node's state changes only once durable.
    async fn run(
        &self,
        st: &mut NodeActorState,
        command: &NodeCommand,
        origin: &Origin,
    ) -> Result<Node, MembershipError> {
        let events = lifecycle::decide(Some(&st.node), command)?;
        if events.is_empty() {
            return Ok(st.node.clone());
        }
        let mut next = Some(st.node.clone());
        let mut records = Vec::new();
        let now = now_ms();
        for event in &events {
            let before = next.as_ref().map(|n| n.state);
            next = lifecycle::apply(next, &st.node.id, now, event);
            records.push(stamped(
                origin,
                event.kind(),
                (before.map(NodeState::as_str), next.as_ref().map(|n| n.state.as_str())),
                event,
            )?);
        }
        let append =
            Append { stream: node_stream(&st.node.id), expected_seq: st.seq, events: records, ..Default::default() };
        let appended = self.writer.append(append).await.map_err(|e| MembershipError::Storage(e.to_string()))?;
        st.seq += appended.records.len() as u64;
        let node = next.ok_or(MembershipError::Unavailable)?;
        for event in &events {
            tracing::info!(node = %node.id, event = event.kind(), state = node.state.as_str(), "node event");
            metrics::counter!("dispatch_node_events_total", "kind" => event.kind()).increment(1);
        }
        if node.state != st.node.state {
            count_state(st.node.state, -1.0);
            count_state(node.state, 1.0);
        }
        st.node = node.clone();
        if st.desired.borrow().0 != node.config_version {
            st.desired.send_replace((node.config_version, node.config.clone()));
        }
        Ok(node)
    }
}

/// `dispatch_nodes{state}` follows every node actor's state as it changes.
fn count_state(state: NodeState, delta: f64) {
    metrics::gauge!("dispatch_nodes", "state" => state.as_str()).increment(delta);
}

impl NodeActorState {
    /// Checks for silence once per heartbeat interval (re-armed when the interval changes).
    fn retime(&mut self, me: &ActorRef<NodeMsg>) {
        let every = Duration::from_millis(self.node.config.heartbeat_interval_ms);
        let stopped = self.node.state == NodeState::Removed;
        if (every == self.tick_every && self.ticker.is_some()) && !stopped {
            return;
        }
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.tick_every = every;
        if !stopped {
            self.ticker = Some(me.send_interval(every, || NodeMsg::Tick));
        }
    }
}

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
    log: Log,
    writer: LogWriter,
    config: MembershipConfig,
}

struct RegistryState {
    nodes: BTreeMap<String, ActorRef<NodeMsg>>,
    by_actor: HashMap<ractor::ActorId, String>,
    by_cert: HashMap<String, String>,
    /// (token id, key hash) → node, so a retried join finds its node.
    by_key: HashMap<(String, String), String>,
    tokens: BTreeMap<String, (JoinToken, u64)>,
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
        for (token, seq) in load_tokens(&self.log)? {
            st.tokens.insert(token.id.clone(), (token, seq));
        }
        for (id, _) in self.log.index_scan(NODES, "", usize::MAX)? {
            let Some((node, _)) = load_node(&self.log, &id)? else { continue };
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
                let _ = reply.send(self.create_token(st, labels, uses, ttl, &origin).await);
            }
            RegistryMsg::Tokens(reply) => {
                let _ = reply.send(st.tokens.values().map(|(t, _)| t.clone()).collect());
            }
            RegistryMsg::RevokeToken { id, origin, reply } => {
                let _ = reply.send(self.token_event(st, &id, TokenEvent::Revoked, &origin).await);
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
        let actor = NodeActor { log: self.log.clone(), writer: self.writer.clone(), config: self.config.clone() };
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
        origin: &Origin,
    ) -> Result<JoinToken, MembershipError> {
        if uses == 0 || ttl.is_zero() {
            return Err(MembershipError::Invalid("a token needs at least one use and a positive ttl".into()));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let event = TokenEvent::Created {
            labels,
            uses_allowed: uses,
            expires_ms: now_ms() + ttl.as_millis() as i64,
            created_by: origin.actor.id.clone(),
        };
        let append = Append {
            stream: token_stream(&id),
            expected_seq: 0,
            events: vec![stamped(origin, event.kind(), (None, None), &event)?],
            index_ops: vec![IndexOp::Put { index: TOKENS.into(), key: id.clone(), value: Vec::new() }],
            ..Default::default()
        };
        let appended = self.writer.append(append).await.map_err(|e| MembershipError::Storage(e.to_string()))?;
        let time = appended.records.first().map_or_else(now_ms, |r| r.time_ms);
        let token = token::apply(None, &id, time, &event).ok_or(MembershipError::Unavailable)?;
        st.tokens.insert(id, (token.clone(), 1));
        report_states(st);
        Ok(token)
    }

    async fn token_event(
        &self,
        st: &mut RegistryState,
        id: &str,
        event: TokenEvent,
        origin: &Origin,
    ) -> Result<JoinToken, MembershipError> {
        let (token, seq) = st.tokens.get(id).cloned().ok_or(TokenRefusal::Unknown)?;
        let append = Append {
            stream: token_stream(id),
            expected_seq: seq,
            events: vec![stamped(origin, event.kind(), (None, None), &event)?],
            ..Default::default()
        };
        self.writer.append(append).await.map_err(|e| MembershipError::Storage(e.to_string()))?;
        let token = token::apply(Some(token), id, now_ms(), &event).ok_or(MembershipError::Unavailable)?;
        st.tokens.insert(id.to_owned(), (token.clone(), seq + 1));
        Ok(token)
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
        let token = st.tokens.get(&token_id).map(|(t, _)| t.clone());
        token::check_use(token.as_ref(), now_ms())?;
        let token_labels = token.map(|t| t.labels).unwrap_or_default();
        let id = format!("node-{}", st.next_node);
        let (cert, cert_der) = issue(&id).map_err(MembershipError::Certificate)?;
        let origin = Origin::system("node.join");
        self.token_event(st, &token_id, TokenEvent::Used { node_id: id.clone() }, &origin).await?;
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
        let events = lifecycle::decide(None, &command)?;
        let mut node = None;
        let mut records = Vec::new();
        for event in &events {
            node = lifecycle::apply(node, &id, now_ms(), event);
            records.push(stamped(&origin, event.kind(), (None, node.as_ref().map(|n| n.state.as_str())), event)?);
        }
        let append = Append {
            stream: node_stream(&id),
            expected_seq: 0,
            events: records,
            index_ops: vec![IndexOp::Put { index: NODES.into(), key: id.clone(), value: Vec::new() }],
            ..Default::default()
        };
        self.writer.append(append).await.map_err(|e| MembershipError::Storage(e.to_string()))?;
        tracing::info!(node = %id, "node joined");
        metrics::counter!("dispatch_node_events_total", "kind" => "node.joined").increment(1);
        st.by_cert.insert(cert.fingerprint.clone(), id.clone());
        self.spawn(me, st, id.clone()).await.map_err(|e| MembershipError::Storage(e.to_string()))?;
        let config_version = node.map_or(1, |n| n.config_version);
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
    pub async fn start(log: Log, writer: LogWriter, config: MembershipConfig) -> Result<Self, MembershipError> {
        let (registry, _) = Actor::spawn(None, Registry { log, writer, config }, ())
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
        ractor::call!(self.actor, |reply| NodeMsg::Command { command: Box::new(command), origin, reply })
            .map_err(gone)?
    }

    /// The node opened an authenticated connection with these capabilities; returns
    /// the configuration stream its connection must deliver.
    pub async fn connect(&self, capabilities: Capabilities) -> Result<watch::Receiver<DesiredConfig>, MembershipError> {
        self.command(NodeCommand::Connect { capabilities }, Origin::node(&self.id, "node.connect")).await?;
        ractor::call!(self.actor, NodeMsg::Subscribe).map_err(gone)
    }

    /// The node is alive. Fails when it was removed.
    pub async fn heartbeat(&self) -> Result<(), MembershipError> {
        ractor::call!(self.actor, NodeMsg::Heartbeat).map_err(gone)?
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
