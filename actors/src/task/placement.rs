//! Placement: which node a queued task goes to. Only nodes that are ACTIVE, run an
//! acknowledged configuration, have a container engine, allow the task's network
//! policy, carry the task's labels (as the admin gave them: a token's or the node's
//! configuration, never what the node claims) and have a free slot; the least busy wins.

use std::collections::HashMap;

use crate::node::NodeView;
use crate::task::TaskSpec;

/// Why no node can take a task now, in the order the rules are checked, so the person
/// waiting is told the first thing to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unplaced {
    #[error("no worker node is ACTIVE with an acknowledged configuration")]
    NoActiveNode,
    #[error("no active node has a container engine (see `dispatch node show`)")]
    NoEngine,
    #[error("no active node allows network policy {0}")]
    NetworkPolicy(String),
    #[error("no active node carries the label(s) {0} (labels come from the join token or `dispatch node config`)")]
    Labels(String),
    #[error("every node that could run it is busy ({running} job(s) running); waiting for a free slot")]
    AllBusy { running: u32 },
}

/// The node for a task: eligible, then least busy (ties by id, so placement repeats);
/// or why there is none.
pub fn choose<'a>(
    nodes: &'a [NodeView],
    busy: &HashMap<String, u32>,
    spec: &TaskSpec,
) -> Result<&'a NodeView, Unplaced> {
    let running = |v: &NodeView| busy.get(&v.node.id).copied().unwrap_or(0);
    let mut eligible: Vec<&NodeView> = nodes.iter().filter(|v| v.node.schedulable()).collect();
    if eligible.is_empty() {
        return Err(Unplaced::NoActiveNode);
    }
    eligible.retain(|v| v.node.capabilities.docker_version.is_some());
    if eligible.is_empty() {
        return Err(Unplaced::NoEngine);
    }
    eligible.retain(|v| v.node.config.allowed_network_policies.iter().any(|p| p == spec.network.as_str()));
    if eligible.is_empty() {
        return Err(Unplaced::NetworkPolicy(spec.network.as_str().to_owned()));
    }
    eligible.retain(|v| {
        let n = &v.node;
        let has = |k: &String, val: &String| [&n.config.labels, &n.token_labels].iter().any(|l| l.get(k) == Some(val));
        spec.labels.iter().all(|(k, val)| has(k, val))
    });
    if eligible.is_empty() {
        let wanted: Vec<String> = spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(Unplaced::Labels(wanted.join(",")));
    }
    let running_there = eligible.iter().map(|v| running(v)).sum();
    eligible
        .into_iter()
        .filter(|v| running(v) < v.node.config.max_concurrent_jobs)
        .min_by_key(|v| (running(v), v.node.id.clone()))
        .ok_or(Unplaced::AllBusy { running: running_there })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use crate::node::{Capabilities, ConfigAck, ConfigOutcome, NodeCert, NodeConfig, NodeEvent, NodeView};
    use crate::task::TaskSpec;

    use super::{Unplaced, choose};

    /// An active node with an engine and an acknowledged configuration.
    fn node(id: &str, claimed: &[(&str, &str)], from_token: &[(&str, &str)], from_config: &[(&str, &str)]) -> NodeView {
        let labels =
            |l: &[(&str, &str)]| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let caps = Capabilities { docker_version: Some("28".into()), labels: labels(claimed), ..Default::default() };
        let config = NodeConfig { labels: labels(from_config), ..NodeConfig::default() };
        let events = [
            NodeEvent::Joined {
                capabilities: caps.clone(),
                token_id: "t".into(),
                key_sha256: "k".into(),
                token_labels: labels(from_token),
                cert: NodeCert { fingerprint: id.into(), not_after_ms: 1, retired: false },
                config,
            },
            NodeEvent::Connected { capabilities: caps },
            NodeEvent::ConfigAcknowledged { ack: ConfigAck { version: 1, outcome: ConfigOutcome::Applied } },
        ];
        let node = events.iter().fold(None, |n, e| crate::node::lifecycle::apply(n, id, 0, e)).unwrap();
        NodeView { node, last_seen_ms_ago: Some(0) }
    }

    fn wanting(labels: &[(&str, &str)]) -> TaskSpec {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TaskSpec {
            command: vec!["true".into()],
            pids: 16,
            timeout_seconds: 10,
            max_attempts: 1,
            labels,
            ..Default::default()
        }
    }

    #[test]
    fn placement_follows_labels_the_admin_gave_never_those_a_node_claims() {
        let gpu = [("gpu", "yes")];
        // (node, chosen for a task that needs gpu=yes)
        let table = [
            (node("node-1", &gpu, &[], &[]), false),
            (node("node-2", &[], &gpu, &[]), true),
            (node("node-3", &[], &[], &gpu), true),
        ];
        for (view, chosen) in table {
            let id = view.node.id.clone();
            let nodes = [view];
            let got = choose(&nodes, &HashMap::new(), &wanting(&gpu)).map(|v| v.node.id.clone());
            assert_eq!(got.is_ok(), chosen, "{id}");
        }
    }

    /// Why a task waits: the first rule no node passes, so the person is told what to fix.
    #[test]
    fn a_task_no_node_can_take_says_why() {
        let ready = || node("node-1", &[], &[("zone", "a")], &[]);
        let mut no_engine = ready();
        no_engine.node.capabilities.docker_version = None;
        let mut gone = ready();
        gone.node.state = crate::node::NodeState::Unreachable;
        let mut offline_only = ready();
        offline_only.node.config.allowed_network_policies = vec!["none".into()];
        let mut restricted = wanting(&[]);
        restricted.network = crate::task::NetworkPolicy::Restricted;
        let one_slot = |mut v: NodeView| {
            v.node.config.max_concurrent_jobs = 1;
            v
        };
        let full = HashMap::from([("node-1".to_owned(), 1)]);
        let none = HashMap::new();
        type Case<'a> = (Vec<NodeView>, &'a HashMap<String, u32>, TaskSpec, Result<&'a str, Unplaced>);
        let table: [Case; 7] = [
            (vec![], &none, wanting(&[]), Err(Unplaced::NoActiveNode)),
            (vec![gone], &none, wanting(&[]), Err(Unplaced::NoActiveNode)),
            (vec![no_engine], &none, wanting(&[]), Err(Unplaced::NoEngine)),
            (vec![offline_only], &none, restricted, Err(Unplaced::NetworkPolicy("restricted".into()))),
            (vec![ready()], &none, wanting(&[("zone", "b")]), Err(Unplaced::Labels("zone=b".into()))),
            (vec![one_slot(ready())], &full, wanting(&[("zone", "a")]), Err(Unplaced::AllBusy { running: 1 })),
            (vec![ready()], &full, wanting(&[("zone", "a")]), Ok("node-1")),
        ];
        for (nodes, busy, spec, expected) in table {
            let got = choose(&nodes, busy, &spec).map(|v| v.node.id.as_str());
            assert_eq!(got, expected, "{spec:?}");
        }
    }
}
