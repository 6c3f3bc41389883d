//! Placement: which node a queued task goes to. Only nodes that are ACTIVE, run an
//! acknowledged configuration, have a container engine, allow the task's network
//! policy, carry the task's labels (as the admin gave them: a token's or the node's
//! configuration, never what the node claims) and have a free slot; the least busy wins.

use std::collections::HashMap;

use crate::node::NodeView;
use crate::task::TaskSpec;

/// The node for a task: eligible, then least busy (ties by id, so placement repeats).
pub fn choose<'a>(nodes: &'a [NodeView], busy: &HashMap<String, u32>, spec: &TaskSpec) -> Option<&'a NodeView> {
    nodes
        .iter()
        .filter(|v| {
            let n = &v.node;
            let has_label =
                |k: &String, val: &String| [&n.config.labels, &n.token_labels].iter().any(|l| l.get(k) == Some(val));
            n.schedulable()
                && n.capabilities.docker_version.is_some()
                && n.config.allowed_network_policies.iter().any(|p| p == spec.network.as_str())
                && spec.labels.iter().all(|(k, v)| has_label(k, v))
                && busy.get(&n.id).copied().unwrap_or(0) < n.config.max_concurrent_jobs
        })
        .min_by_key(|v| (busy.get(&v.node.id).copied().unwrap_or(0), v.node.id.clone()))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use crate::node::{Capabilities, ConfigAck, ConfigOutcome, NodeCert, NodeConfig, NodeEvent, NodeView};
    use crate::task::TaskSpec;

    use super::choose;

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
            assert_eq!(got.is_some(), chosen, "{id}");
        }
    }
}
