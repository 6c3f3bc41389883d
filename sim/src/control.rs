//! The harness's hand on the orchestrator: config changes, task submissions and
//! raw job redeliveries, asked for by a test and run inside the simulation.

use std::collections::BTreeMap;
use std::sync::Arc;

use dispatch_node::actors::node::{NodeCommand, Origin};
use dispatch_node::cluster::proto::{JobAnswer, JobSpec, NetworkPolicy, Push, PushReply};
use dispatch_node::cluster_edge::OrchestratorCluster;
use dispatch_node::dispatch::Dispatcher;
use tokio::sync::mpsc;

use crate::{Control, Shared, lock};

/// Runs the test's control commands on the orchestrator until the harness lets go.
pub(crate) async fn obey(
    shared: &Shared,
    cluster: &Arc<OrchestratorCluster>,
    tasks: &Dispatcher,
    commands: &mut mpsc::UnboundedReceiver<Control>,
) {
    while let Some(command) = commands.recv().await {
        match command {
            Control::SetConfig { node, config } => {
                let set = NodeCommand::SetConfig { config };
                if let Err(e) = cluster.membership.command(&node, set, Origin::system("sim")).await {
                    tracing::warn!(error = %e, "config change refused");
                }
            }
            Control::Submit { id, spec } => {
                if let Err(e) = tasks.submit(id, *spec, Origin::system("sim"), None).await {
                    tracing::warn!(error = %e, "task refused");
                }
            }
            Control::Redeliver { job_id, node } => {
                let answer = redeliver(cluster, &job_id, &node).await;
                lock(&shared.redelivered).push(answer);
            }
        }
    }
}

/// Offers of a redelivery before it counts as unanswered, and the wait between them.
const REDELIVER_TRIES: usize = 10;
const REDELIVER_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A push of `RunJob` for `job_id` straight to the node, and its answer. The push is
/// offered again while the node has no connection or its connection drops before it
/// answers, as the dispatcher re-offers: on a lossy network a worker may be between
/// connections at that moment (seed 141 of `duplicated_and_delayed_messages_never_run_a_job_twice`
/// lost the connection mid-push), and only an offer that reaches it tests anything.
async fn redeliver(cluster: &OrchestratorCluster, job_id: &str, node: &str) -> String {
    let (task_id, attempt) = job_id.rsplit_once('/').map_or((job_id, 0), |(t, n)| (t, n.parse().unwrap_or(0)));
    let job = JobSpec {
        job_id: job_id.to_owned(),
        task_id: task_id.to_owned(),
        attempt,
        command: vec!["work".into(), "1000".into(), "0".into()],
        image: "sim".into(),
        network: NetworkPolicy::None,
        memory_bytes: 0,
        cpu_millis: 0,
        pids: 0,
        timeout_ms: 60_000,
        env: BTreeMap::new(),
        files: BTreeMap::new(),
        output_cap: 4_096,
    };
    let push = Push::RunJob { job, lease_ms: 5_000 };
    for _ in 0..REDELIVER_TRIES {
        match cluster.links.offer(node, &push).await {
            Some(PushReply::Job(JobAnswer::AlreadyFinished(_))) => return "already finished".into(),
            Some(other) => return format!("{other:?}"),
            None => tokio::time::sleep(REDELIVER_RETRY).await,
        }
    }
    "no connection or no answer".into()
}
