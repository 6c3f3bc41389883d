//! One actor per joined node: it keeps the node's state, notices silence
//! (UNREACHABLE, then LOST) on its own timer, and publishes the configuration the
//! node's connection must deliver. Every change runs through `kernel::execute`.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use super::entity::{Nodes, count_state};
use super::lifecycle::{Node, NodeCommand, NodeError, NodeState};
use super::view::{DesiredConfig, MembershipConfig, MembershipError, NodeView};
use crate::kernel::{self, Failure, Kernel, Loaded, Origin, Request};

pub(super) enum NodeMsg {
    Command {
        command: Box<NodeCommand>,
        origin: Box<Origin>,
        reply: RpcReplyPort<Result<Node, MembershipError>>,
    },
    /// The node is alive (on the connection whose certificate has this fingerprint);
    /// answers whether it may stay connected.
    Heartbeat {
        fingerprint: String,
        reply: RpcReplyPort<Result<(), MembershipError>>,
    },
    Subscribe(RpcReplyPort<watch::Receiver<DesiredConfig>>),
    Get(RpcReplyPort<NodeView>),
    Tick,
}

pub(super) struct NodeActor {
    pub(super) kernel: Kernel,
    pub(super) config: MembershipConfig,
}

pub(super) struct NodeActorState {
    id: String,
    loaded: Loaded<Nodes>,
    last_seen: Option<Instant>,
    started: Instant,
    desired: watch::Sender<DesiredConfig>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    tick_every: Duration,
}

impl NodeActorState {
    fn node(&self) -> Result<&Node, MembershipError> {
        self.loaded.state.as_ref().ok_or(MembershipError::Node(NodeError::NotFound))
    }
}

impl From<Failure<Nodes>> for MembershipError {
    fn from(f: Failure<Nodes>) -> Self {
        match f {
            Failure::Rejected(e) => MembershipError::Node(e),
            Failure::KeyReused => MembershipError::Invalid(f.to_string()),
            Failure::Unavailable(why) => MembershipError::Storage(why),
        }
    }
}

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = NodeActorState;
    type Arguments = String;

    async fn pre_start(&self, me: ActorRef<NodeMsg>, id: String) -> Result<NodeActorState, ActorProcessingErr> {
        let loaded = kernel::load::<Nodes>(&self.kernel.log, &id)?;
        let node = loaded.state.as_ref().ok_or_else(|| format!("node {id} has no events"))?;
        let (desired, _) = watch::channel((node.config_version, node.config.clone()));
        count_state(node.state, 1.0);
        let mut st = NodeActorState {
            id,
            loaded,
            last_seen: None,
            started: Instant::now(),
            desired,
            ticker: None,
            tick_every: Duration::ZERO,
        };
        st.retime(&me);
        Ok(st)
    }

    async fn post_stop(&self, _me: ActorRef<NodeMsg>, st: &mut NodeActorState) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        if let Ok(node) = st.node() {
            count_state(node.state, -1.0);
        }
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
                let result = self.run(st, *command, *origin).await;
                st.retime(&me);
                let _ = reply.send(result);
            }
            NodeMsg::Heartbeat { fingerprint, reply } => {
                let _ = reply.send(self.heartbeat(st, &fingerprint).await);
                metrics::counter!("dispatch_node_heartbeats_total").increment(1);
            }
            NodeMsg::Subscribe(reply) => {
                let _ = reply.send(st.desired.subscribe());
            }
            NodeMsg::Get(reply) => {
                if let Ok(node) = st.node() {
                    let last_seen_ms_ago = st.last_seen.map(|t| t.elapsed().as_millis() as u64);
                    let _ = reply.send(NodeView { node: node.clone(), last_seen_ms_ago });
                }
            }
            NodeMsg::Tick => self.check_silence(st).await,
        }
        Ok(())
    }
}

impl NodeActor {
    /// The kernel's command path; the configuration stream follows the durable state.
    async fn run(
        &self,
        st: &mut NodeActorState,
        command: NodeCommand,
        origin: Origin,
    ) -> Result<Node, MembershipError> {
        let request = Request::new(st.id.clone(), command, origin);
        let node = kernel::execute(&self.kernel, &(), &mut st.loaded, &request).await?.state;
        if st.desired.borrow().0 != node.config_version {
            st.desired.send_replace((node.config_version, node.config.clone()));
        }
        Ok(node)
    }

    /// Admits the heartbeat and records it in one turn of the actor (a connection's
    /// other requests are admitted by a separate look at the node; a heartbeat, the
    /// most frequent request, saves that round trip).
    async fn heartbeat(&self, st: &mut NodeActorState, fingerprint: &str) -> Result<(), MembershipError> {
        let node = st.node()?;
        if node.state == NodeState::Removed {
            return Err(NodeError::Removed.into());
        }
        if !node.accepts_cert(fingerprint) {
            return Err(NodeError::CertReplaced.into());
        }
        st.last_seen = Some(Instant::now());
        let node = st.node()?;
        match node.state {
            NodeState::Unreachable | NodeState::Lost => {
                // The same connection came back (a partition healed).
                let back = NodeCommand::Connect { capabilities: node.capabilities.clone() };
                let origin = Origin::node(&st.id, "node.heartbeat");
                self.run(st, back, origin).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    async fn check_silence(&self, st: &mut NodeActorState) {
        let Ok(node) = st.node() else { return };
        let interval = node.config.heartbeat_interval_ms;
        let silent_ms = st.last_seen.unwrap_or(st.started).elapsed().as_millis() as u64;
        let check = NodeCommand::CheckSilence {
            silent_ms,
            unreachable_after_ms: interval * u64::from(self.config.unreachable_after_beats),
            lost_after_ms: interval * u64::from(self.config.lost_after_beats),
        };
        if let Err(e) = self.run(st, check, Origin::system("node.heartbeat_timeout")).await {
            tracing::warn!(node = %st.id, error = %e, "silence check not recorded");
        }
    }
}

impl NodeActorState {
    /// Checks for silence once per heartbeat interval (re-armed when the interval changes).
    fn retime(&mut self, me: &ActorRef<NodeMsg>) {
        let Ok(node) = self.node() else { return };
        let every = Duration::from_millis(node.config.heartbeat_interval_ms);
        let stopped = node.state == NodeState::Removed;
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
