//! Nodes and join tokens on the kernel: streams, rules, indexes, metrics. The node
//! actor (liveness, silence checks, configuration stream) runs each node command
//! through `kernel::execute`; tokens are commanded by the membership registry.

use storage::IndexOp;

use super::lifecycle::{self, Node, NodeCommand, NodeError, NodeEvent, NodeState};
use super::token::{self, JoinToken, TokenCommand, TokenEvent, TokenRefusal};
use crate::kernel::{At, Context, Entity};

/// Every joined node: key `id`.
pub const NODES: &str = "nodes";
/// Every bootstrap token: key `id`.
pub const TOKENS: &str = "join_tokens";

/// The worker-node kind.
#[derive(Debug, Clone, Copy)]
pub struct Nodes;

impl Entity for Nodes {
    const KIND: &'static str = "node";
    const STREAM: &'static str = "node";

    type Id = String;
    type State = Node;
    type Command = NodeCommand;
    type Event = NodeEvent;
    type Error = NodeError;
    type Deps = ();

    fn creates(command: &NodeCommand) -> bool {
        matches!(command, NodeCommand::Join { .. })
    }

    fn not_found() -> NodeError {
        NodeError::NotFound
    }

    fn decide(
        _: &(),
        _: &Context<'_, Self>,
        node: Option<&Node>,
        command: &NodeCommand,
    ) -> Result<Vec<NodeEvent>, NodeError> {
        lifecycle::decide(node, command)
    }

    fn apply(node: Option<Node>, at: At<'_, String>, event: &NodeEvent) -> Option<Node> {
        lifecycle::apply(node, at.id, at.time_ms, event)
    }

    fn event_kind(event: &NodeEvent) -> &'static str {
        event.kind()
    }

    fn state_name(node: &Node) -> &'static str {
        node.state.as_str()
    }

    fn index_ops(_: &Context<'_, Self>, before: Option<&Node>, after: &Node, _: &[NodeEvent]) -> Vec<IndexOp> {
        match before {
            None => vec![IndexOp::Put { index: NODES.into(), key: after.id.clone(), value: Vec::new() }],
            Some(_) => Vec::new(),
        }
    }

    fn committed(_: &(), before: Option<&Node>, after: &Node, events: &[NodeEvent]) {
        for event in events {
            tracing::info!(node = %after.id, event = event.kind(), state = after.state.as_str(), "node event");
            metrics::counter!("dispatch_node_events_total", "kind" => event.kind()).increment(1);
        }
        // A new node's actor counts its state when it starts.
        if let Some(before) = before
            && before.state != after.state
        {
            count_state(before.state, -1.0);
            count_state(after.state, 1.0);
        }
    }
}

/// `dispatch_nodes{state}` follows every node actor's state as it changes.
pub(super) fn count_state(state: NodeState, delta: f64) {
    metrics::gauge!("dispatch_nodes", "state" => state.as_str()).increment(delta);
}

/// The bootstrap-token kind.
#[derive(Debug, Clone, Copy)]
pub struct JoinTokens;

impl Entity for JoinTokens {
    const KIND: &'static str = "join_token";
    const STREAM: &'static str = "join-token";

    type Id = String;
    type State = JoinToken;
    type Command = TokenCommand;
    type Event = TokenEvent;
    type Error = TokenRefusal;
    type Deps = ();

    fn creates(command: &TokenCommand) -> bool {
        matches!(command, TokenCommand::Create { .. })
    }

    fn not_found() -> TokenRefusal {
        TokenRefusal::Unknown
    }

    fn decide(
        _: &(),
        cx: &Context<'_, Self>,
        token: Option<&JoinToken>,
        command: &TokenCommand,
    ) -> Result<Vec<TokenEvent>, TokenRefusal> {
        token::decide(token, command, cx.now_ms)
    }

    fn apply(token: Option<JoinToken>, at: At<'_, String>, event: &TokenEvent) -> Option<JoinToken> {
        token::apply(token, at.id, at.time_ms, event)
    }

    fn event_kind(event: &TokenEvent) -> &'static str {
        event.kind()
    }

    fn state_name(token: &JoinToken) -> &'static str {
        if token.revoked {
            "REVOKED"
        } else if token.uses >= token.uses_allowed {
            "USED_UP"
        } else {
            "ACTIVE"
        }
    }

    fn index_ops(
        _: &Context<'_, Self>,
        before: Option<&JoinToken>,
        after: &JoinToken,
        _: &[TokenEvent],
    ) -> Vec<IndexOp> {
        match before {
            None => vec![IndexOp::Put { index: TOKENS.into(), key: after.id.clone(), value: Vec::new() }],
            Some(_) => Vec::new(),
        }
    }
}
