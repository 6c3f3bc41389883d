use super::*;

fn caps(host: &str) -> Capabilities {
    Capabilities { hostname: host.into(), cores: 2, arch: "x86_64".into(), os: "linux".into(), ..Default::default() }
}

fn cert(n: u8) -> NodeCert {
    NodeCert { fingerprint: format!("{n:02x}"), not_after_ms: 1_000, retired: false }
}

fn join() -> NodeCommand {
    NodeCommand::Join {
        capabilities: caps("w1"),
        token_id: "t".into(),
        key_sha256: "k".into(),
        token_labels: BTreeMap::new(),
        cert: cert(1),
        config: NodeConfig::default(),
    }
}

fn joined() -> Node {
    run(None, &[join()]).expect("join")
}

/// Decides and applies each command in turn.
fn run(mut node: Option<Node>, commands: &[NodeCommand]) -> Result<Node, NodeError> {
    for c in commands {
        for e in decide(node.as_ref(), c)? {
            node = apply(node, "node-1", 0, &e);
        }
    }
    node.ok_or(NodeError::NotFound)
}

fn in_state(state: NodeState) -> Node {
    let connect = NodeCommand::Connect { capabilities: caps("w1") };
    let silent = |ms| NodeCommand::CheckSilence { silent_ms: ms, unreachable_after_ms: 10, lost_after_ms: 100 };
    let path: Vec<NodeCommand> = match state {
        NodeState::Joining => vec![],
        NodeState::Active => vec![connect],
        NodeState::Draining => vec![connect, NodeCommand::Drain],
        NodeState::Unreachable => vec![connect, silent(10)],
        NodeState::Lost => vec![connect, silent(10), silent(100)],
        NodeState::Removed => vec![NodeCommand::Remove],
    };
    let node = run(Some(joined()), &path).expect("path");
    assert_eq!(node.state, state);
    node
}

#[test]
fn every_state_answers_connect_silence_drain_and_remove_as_documented() {
    use NodeState::*;
    let connect = NodeCommand::Connect { capabilities: caps("w1") };
    let silent = |ms| NodeCommand::CheckSilence { silent_ms: ms, unreachable_after_ms: 10, lost_after_ms: 100 };
    // (from, command, resulting state or refusal)
    let table: Vec<(NodeState, NodeCommand, Result<NodeState, NodeError>)> = vec![
        (Joining, connect.clone(), Ok(Active)),
        (Active, connect.clone(), Ok(Active)),
        (Draining, connect.clone(), Ok(Draining)),
        (Unreachable, connect.clone(), Ok(Active)),
        (Lost, connect.clone(), Ok(Active)),
        (Removed, connect.clone(), Err(NodeError::Removed)),
        (Joining, silent(1_000), Ok(Joining)),
        (Active, silent(9), Ok(Active)),
        (Active, silent(10), Ok(Unreachable)),
        (Draining, silent(10), Ok(Unreachable)),
        (Unreachable, silent(99), Ok(Unreachable)),
        (Unreachable, silent(100), Ok(Lost)),
        (Lost, silent(10_000), Ok(Lost)),
        (Active, NodeCommand::Drain, Ok(Draining)),
        (Unreachable, NodeCommand::Drain, Ok(Unreachable)),
        (Draining, NodeCommand::Drain, Ok(Draining)),
        (Removed, NodeCommand::Drain, Err(NodeError::Removed)),
        (Active, NodeCommand::Remove, Ok(Removed)),
        (Lost, NodeCommand::Remove, Ok(Removed)),
        (Removed, NodeCommand::Remove, Ok(Removed)),
    ];
    for (from, command, want) in table {
        let got = run(Some(in_state(from)), std::slice::from_ref(&command)).map(|n| n.state);
        assert_eq!(got, want, "{from:?} + {command:?}");
    }
}

#[test]
fn a_draining_node_that_drops_off_comes_back_draining() {
    let node = in_state(NodeState::Draining);
    let silent = NodeCommand::CheckSilence { silent_ms: 10, unreachable_after_ms: 10, lost_after_ms: 100 };
    let node = run(Some(node), &[silent, NodeCommand::Connect { capabilities: caps("w1") }]).unwrap();
    assert_eq!(node.state, NodeState::Draining);
    assert!(!node.schedulable());
}

#[test]
fn config_versions_only_move_forward_and_acks_name_them() {
    let node = in_state(NodeState::Active);
    assert_eq!(node.config_version, 1);
    assert!(node.config_pending() && !node.schedulable(), "no acknowledgement yet");

    let ack = |version, outcome| NodeCommand::AcknowledgeConfig { ack: ConfigAck { version, outcome } };
    let node = run(Some(node), &[ack(1, ConfigOutcome::Applied)]).unwrap();
    assert!(!node.config_pending() && node.schedulable());

    let same = NodeCommand::SetConfig { config: node.config.clone() };
    assert_eq!(decide(Some(&node), &same), Ok(vec![]), "an unchanged config is not a new version");

    let changed = NodeConfig { max_concurrent_jobs: 8, ..node.config.clone() };
    let node = run(Some(node), &[NodeCommand::SetConfig { config: changed }]).unwrap();
    assert_eq!(node.config_version, 2);
    assert!(node.config_pending());

    assert_eq!(
        decide(Some(&node), &ack(3, ConfigOutcome::Applied)),
        Err(NodeError::UnknownConfigVersion { acked: 3, current: 2 })
    );
    let failed = ConfigOutcome::Failed { error: "no such image".into() };
    let node = run(Some(node), &[ack(2, failed.clone())]).unwrap();
    assert!(!node.config_pending() && !node.schedulable(), "a failed config is acknowledged but not runnable");
    assert_eq!(decide(Some(&node), &ack(1, ConfigOutcome::Applied)), Ok(vec![]), "a stale ack changes nothing");
    assert_eq!(decide(Some(&node), &ack(2, failed)), Ok(vec![]), "a repeated ack changes nothing");
}

#[test]
fn invalid_configs_are_refused_with_the_reason() {
    let node = in_state(NodeState::Active);
    let cases = [
        (NodeConfig { heartbeat_interval_ms: 5, ..NodeConfig::default() }, "heartbeat_interval_ms"),
        (NodeConfig { max_concurrent_jobs: 5_000, ..NodeConfig::default() }, "max_concurrent_jobs"),
        (NodeConfig { allowed_network_policies: vec!["host".into()], ..NodeConfig::default() }, "network policy"),
        (NodeConfig { sandbox_image: " ".into(), ..NodeConfig::default() }, "sandbox_image"),
    ];
    for (config, why) in cases {
        match decide(Some(&node), &NodeCommand::SetConfig { config }) {
            Err(NodeError::InvalidConfig(msg)) => assert!(msg.contains(why), "{msg}"),
            other => panic!("expected refusal naming {why}, got {other:?}"),
        }
    }
}

#[test]
fn only_a_join_creates_a_node_and_only_once() {
    assert_eq!(decide(None, &NodeCommand::Drain), Err(NodeError::NotFound));
    assert_eq!(decide(Some(&joined()), &join()), Err(NodeError::AlreadyJoined));
}

#[test]
fn a_renewed_certificate_retires_the_old_one_once_it_is_used() {
    let node = run(Some(in_state(NodeState::Active)), &[NodeCommand::IssueCert { cert: cert(2) }]).unwrap();
    let (old, new) = (cert(1).fingerprint, cert(2).fingerprint);
    assert!(node.accepts_cert(&old), "until the new one is used, a lost renewal answer leaves the old one working");
    let use_old = NodeCommand::UseCert { fingerprint: old.clone() };
    assert_eq!(decide(Some(&node), &use_old), Ok(vec![]));
    let node = run(Some(node), &[NodeCommand::UseCert { fingerprint: new.clone() }]).unwrap();
    assert!(!node.accepts_cert(&old) && node.accepts_cert(&new));
    assert_eq!(decide(Some(&node), &use_old), Err(NodeError::CertReplaced));
    assert_eq!(decide(Some(&node), &NodeCommand::UseCert { fingerprint: "ff".into() }), Err(NodeError::CertReplaced));
    let removed = run(Some(node), &[NodeCommand::Remove]).unwrap();
    assert!(!removed.accepts_cert(&new), "a removed node's certificates open nothing");
}

#[test]
fn renewed_certificates_are_added_and_capability_changes_recorded() {
    let node = run(Some(in_state(NodeState::Active)), &[NodeCommand::IssueCert { cert: cert(2) }]).unwrap();
    assert_eq!(node.certs.len(), 2);
    let new_caps = Capabilities { docker_version: Some("28.2.2".into()), ..caps("w1") };
    let node = run(Some(node), &[NodeCommand::ReportCapabilities { capabilities: new_caps.clone() }]).unwrap();
    assert_eq!(node.capabilities, new_caps);
    assert_eq!(decide(Some(&node), &NodeCommand::ReportCapabilities { capabilities: new_caps }), Ok(vec![]));
}
