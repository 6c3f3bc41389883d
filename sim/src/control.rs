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

/// One push of `RunJob` for `job_id` straight to the node, and its answer.
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
    match cluster.links.offer(node, &Push::RunJob { job, lease_ms: 5_000 }).await {
        Some(PushReply::Job(JobAnswer::AlreadyFinished(_))) => "already finished".into(),
        Some(other) => format!("{other:?}"),
        None => "no connection or no answer".into(),
    }
}
