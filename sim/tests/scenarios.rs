//! Cluster scenarios in the turmoil simulator: the real orchestrator and worker
//! code over real QUIC + TLS on simulated UDP. Each asserts invariants; a failure
//! prints its seed (replay with `SIM_SEED=<seed>`).

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

use dispatch_node::actors;

use std::time::Duration;

use actors::node::{ConfigOutcome, NodeConfig, NodeState};
use dispatch_sim::{Harness, ORCHESTRATOR, Setup};

const S: fn(u64) -> Duration = Duration::from_secs;

/// Joined, connected, and running the node's current configuration.
fn settled(h: &Harness, host: &str) -> bool {
    let Some(n) = h.node(host) else { return false };
    n.state == NodeState::Active
        && n.config_ack.as_ref().is_some_and(|a| a.version == n.config_version && a.outcome == ConfigOutcome::Applied)
        && h.worker_status(host).is_some_and(|s| s.ready().is_ok())
}

/// Invariants that hold at the end of every scenario.
fn check_membership(h: &Harness, hosts: &[&str]) {
    let nodes = h.nodes();
    assert_eq!(nodes.len(), hosts.len(), "one node per worker host, never two: {nodes:?}");
    for host in hosts {
        assert_eq!(h.join_calls(host), 1, "{host} joined once; restarts reuse its identity");
    }
    assert_eq!(h.token_uses(), hosts.len() as u32, "the token was used once per node");
    let ids: std::collections::BTreeSet<_> = nodes.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids.len(), nodes.len(), "node ids are unique");
}

fn state(h: &Harness, host: &str) -> Option<NodeState> {
    h.node(host).map(|n| n.state)
}

#[test]
fn join_across_loss_and_jitter() {
    dispatch_sim::sweep("join_across_loss_and_jitter", 7, |seed| {
        let setup = Setup { fail_rate: 0.05, max_latency: Duration::from_millis(80), ..Setup::new(seed) };
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.worker("w2");
        h.run_until("both workers joined and running their config", S(120), |h| settled(h, "w1") && settled(h, "w2"));
        check_membership(&h, &["w1", "w2"]);
    });
}

#[test]
fn partition_during_join_then_repair() {
    dispatch_sim::sweep("partition_during_join_then_repair", 11, |seed| {
        let setup = Setup::new(seed);
        let mut h = Harness::new(&setup);
        h.worker("w1");
        // The worker starts cut off: its join attempts time out and are retried.
        h.sim.partition(ORCHESTRATOR, "w1");
        h.run_for(S(15));
        assert_eq!(h.join_calls("w1"), 1, "the worker is trying to join");
        assert!(h.node("w1").is_none(), "nothing joins across a partition");
        h.sim.repair(ORCHESTRATOR, "w1");
        h.run_until("w1 joined after the partition healed", S(120), |h| settled(h, "w1"));
        check_membership(&h, &["w1"]);
    });
}

#[test]
fn worker_crash_and_restart_keeps_its_identity() {
    dispatch_sim::sweep("worker_crash_and_restart_keeps_its_identity", 13, |seed| {
        let setup = Setup::new(seed);
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.run_until("w1 settled", S(60), |h| settled(h, "w1"));
        let id = h.node("w1").map(|n| n.id);
        h.sim.crash("w1");
        h.run_until("w1 seen as unreachable", S(30), |h| state(h, "w1") == Some(NodeState::Unreachable));
        h.sim.bounce("w1");
        h.run_until("w1 back", S(60), |h| settled(h, "w1"));
        assert_eq!(h.node("w1").map(|n| n.id), id, "same node after the restart");
        check_membership(&h, &["w1"]);
    });
}

#[test]
fn orchestrator_crash_and_restart_recovers_nodes_from_the_log() {
    dispatch_sim::sweep("orchestrator_crash_and_restart_recovers_nodes_from_the_log", 17, |seed| {
        let setup = Setup::new(seed);
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.worker("w2");
        h.run_until("both settled", S(60), |h| settled(h, "w1") && settled(h, "w2"));
        h.set_config(
            &h.node("w1").unwrap().id,
            NodeConfig { max_concurrent_jobs: 6, heartbeat_interval_ms: 1_000, ..NodeConfig::default() },
        );
        h.run_until("w1 runs config v2", S(30), |h| {
            h.node("w1").is_some_and(|n| n.config_ack.as_ref().is_some_and(|a| a.version == 2))
        });
        let before = h.nodes();

        h.sim.crash(ORCHESTRATOR);
        h.run_for(S(3));
        h.sim.bounce(ORCHESTRATOR);
        h.run_for(Duration::from_millis(100));
        let recovered = h.nodes();
        assert_eq!(
            recovered.iter().map(|n| (&n.id, n.state, n.config_version)).collect::<Vec<_>>(),
            before.iter().map(|n| (&n.id, n.state, n.config_version)).collect::<Vec<_>>(),
            "node states and configuration versions come back from the log"
        );
        h.run_until("both reconnected", S(60), |h| {
            settled(h, "w1") && settled(h, "w2") && h.worker_status("w1").is_some_and(|s| s.connected)
        });
        assert_eq!(h.node("w1").map(|n| n.config.max_concurrent_jobs), Some(6));
        check_membership(&h, &["w1", "w2"]);
    });
}

#[test]
fn a_long_partition_reaches_lost_and_heals_back_to_active() {
    dispatch_sim::sweep("a_long_partition_reaches_lost_and_heals_back_to_active", 19, |seed| {
        let setup = Setup::new(seed);
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.run_until("w1 settled", S(60), |h| settled(h, "w1"));
        h.sim.partition(ORCHESTRATOR, "w1");
        h.run_until("w1 unreachable", S(10), |h| state(h, "w1") == Some(NodeState::Unreachable));
        h.run_until("w1 lost", S(30), |h| state(h, "w1") == Some(NodeState::Lost));
        h.sim.repair(ORCHESTRATOR, "w1");
        h.run_until("w1 active again", S(60), |h| settled(h, "w1"));
        let kinds: Vec<String> = h.trace();
        let order: Vec<&str> = ["node.unreachable", "node.lost", "node.connected"]
            .into_iter()
            .filter(|k| kinds.iter().any(|t| t.contains(k)))
            .collect();
        assert_eq!(order.len(), 3, "trace shows unreachable, lost and the reconnect: {kinds:#?}");
        check_membership(&h, &["w1"]);
    });
}

#[test]
fn config_changed_during_a_partition_is_acknowledged_after_it_heals() {
    dispatch_sim::sweep("config_changed_during_a_partition_is_acknowledged_after_it_heals", 23, |seed| {
        let setup = Setup::new(seed);
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.run_until("w1 settled", S(60), |h| settled(h, "w1"));
        h.sim.partition(ORCHESTRATOR, "w1");
        h.run_for(S(1));
        let id = h.node("w1").unwrap().id;
        h.set_config(&id, NodeConfig { sandbox_image: "sandbox:v2".into(), ..NodeConfig::default() });
        h.run_until("config v2 set", S(5), |h| h.node("w1").is_some_and(|n| n.config_version == 2));
        h.run_for(S(5));
        let n = h.node("w1").unwrap();
        assert!(n.config_pending(), "not acknowledged while partitioned: {:?}", n.config_ack);
        assert_eq!(h.worker_status("w1").and_then(|s| s.applied_version), Some(1));
        h.sim.repair(ORCHESTRATOR, "w1");
        h.run_until("v2 acknowledged after the partition heals", S(60), |h| settled(h, "w1"));
        assert_eq!(h.worker_status("w1").and_then(|s| s.applied_version), Some(2));
        check_membership(&h, &["w1"]);
    });
}

/// The orchestrator crashes right after a configuration change is stored, before or
/// while it reaches the worker: after the restart it is pushed again and acknowledged,
/// and the node is still one node.
#[test]
fn an_orchestrator_restart_during_a_config_change_still_gets_it_acknowledged() {
    dispatch_sim::sweep("an_orchestrator_restart_during_a_config_change_still_gets_it_acknowledged", 73, |seed| {
        let mut h = Harness::new(&Setup::new(seed));
        h.worker("w1");
        h.run_until("w1 settled", S(60), |h| settled(h, "w1"));
        let id = h.node("w1").unwrap().id;
        h.set_config(&id, NodeConfig { sandbox_image: "sandbox:v2".into(), ..NodeConfig::default() });
        h.run_until("config v2 stored", S(5), |h| h.node("w1").is_some_and(|n| n.config_version == 2));
        h.crash(ORCHESTRATOR);
        h.run_for(S(2));
        h.sim.bounce(ORCHESTRATOR);
        h.run_until("v2 acknowledged after the restart", S(60), |h| settled(h, "w1"));
        assert_eq!(h.worker_status("w1").and_then(|s| s.applied_version), Some(2));
        check_membership(&h, &["w1"]);
    });
}

#[test]
fn a_steady_cluster_raises_no_false_alarms() {
    dispatch_sim::sweep("a_steady_cluster_raises_no_false_alarms", 31, |seed| {
        let setup = Setup::new(seed);
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.worker("w2");
        h.run_until("both settled", S(60), |h| settled(h, "w1") && settled(h, "w2"));
        h.sim.partition(ORCHESTRATOR, "w2");
        h.run_for(S(60));
        let trace = h.trace();
        let w1 = h.node("w1").unwrap().id;
        let alarms: Vec<&String> =
            trace.iter().filter(|t| t.starts_with(&format!("{w1} ")) && t.contains("unreachable")).collect();
        assert!(alarms.is_empty(), "w1 heartbeats on time while w2 is cut off: {trace:#?}");
        assert_eq!(state(&h, "w2"), Some(NodeState::Lost));
        assert!(settled(&h, "w1"));
    });
}

/// At the default 5 s heartbeat a connection carries its heartbeats and nothing else:
/// only the worker pings, and only after 6 s of silence (pings from both sides every
/// 2 s, each acknowledged, used to be most of a cluster's packets).
#[test]
fn a_steady_connection_carries_only_its_heartbeats() {
    dispatch_sim::sweep("a_steady_connection_carries_only_its_heartbeats", 41, |seed| {
        let mut h = Harness::new(&Setup { heartbeat_interval_ms: 5_000, ..Setup::new(seed) });
        h.worker("w1");
        h.run_until("w1 settled", S(60), |h| settled(h, "w1"));
        h.run_for(S(10));
        let before = h.orchestrator_datagrams();
        h.run_for(S(60));
        let sent = h.orchestrator_datagrams() - before;
        // 12 heartbeats in the minute, each answered in one packet, and at most two more
        // per heartbeat for acks, stream credit and connection ids (seeds send 25–28;
        // with pings from both sides every 2 s it was 70).
        assert!((12..=36).contains(&sent), "the orchestrator sent {sent} datagrams for 12 heartbeats");
        assert!(settled(&h, "w1"));
    });
}

/// Heartbeats slower than the connection's idle timeout (10 s): the worker's pings
/// keep its one connection open, and the node is never thought unreachable.
#[test]
fn heartbeats_slower_than_the_idle_timeout_keep_one_connection() {
    dispatch_sim::sweep("heartbeats_slower_than_the_idle_timeout_keep_one_connection", 43, |seed| {
        let mut h = Harness::new(&Setup { heartbeat_interval_ms: 30_000, ..Setup::new(seed) });
        h.worker("w1");
        h.run_until("w1 settled", S(120), |h| settled(h, "w1"));
        h.run_for(S(180));
        let trace = h.trace();
        let connects = trace.iter().filter(|t| t.contains("node.connected")).count();
        assert_eq!(connects, 1, "one connection for the whole run: {trace:#?}");
        assert!(!trace.iter().any(|t| t.contains("node.unreachable")), "{trace:#?}");
        assert!(settled(&h, "w1"));
    });
}

/// Same seed, same story: the trace of domain events repeats exactly, down to each
/// event's id (the kernel takes ids from the seeded source).
#[test]
fn the_same_seed_gives_the_same_trace() {
    let run = |seed: u64| {
        let setup = Setup { fail_rate: 0.05, max_latency: Duration::from_millis(50), ..Setup::new(seed) };
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.worker("w2");
        h.run_until("both settled", S(120), |h| settled(h, "w1") && settled(h, "w2"));
        h.sim.partition(ORCHESTRATOR, "w2");
        h.run_until("w2 lost", S(40), |h| state(h, "w2") == Some(NodeState::Lost));
        h.sim.repair(ORCHESTRATOR, "w2");
        h.run_until("w2 back", S(60), |h| settled(h, "w2"));
        h.trace()
    };
    dispatch_sim::sweep("the_same_seed_gives_the_same_trace", 29, |seed| {
        let (first, second) = (run(seed), run(seed));
        assert!(first.len() >= 8, "a trace with joins, acks, loss and return: {first:#?}");
        assert_eq!(first, second, "same seed, different trace");
    });
}
