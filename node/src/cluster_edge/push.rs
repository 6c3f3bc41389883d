//! Configuration pushed to a connected node until it acknowledges the newest version.

use std::time::Duration;

use actors::node::{ConfigAck, NodeConfig, NodeHandle};
use cluster::orchestrator;
use cluster::proto::{Push, PushReply};
use cluster::transport::TransportError;
use cluster::wire::WireError;
use quinn::Connection;
use tokio::sync::watch;

use crate::protocol;

const PUSH_RETRY: Duration = Duration::from_secs(1);

/// Delivers the node's configuration whenever it is newer than what the node
/// acknowledged, retrying until the node answers or the connection ends.
pub(super) async fn push_config(conn: Connection, node: NodeHandle, mut desired: watch::Receiver<(u64, NodeConfig)>) {
    loop {
        let (version, config) = desired.borrow_and_update().clone();
        let pending = node.view().await.map(|v| v.node.config_pending() && v.node.config_version == version);
        match pending {
            Ok(true) => match push_once(&conn, version, config).await {
                Ok(ack) => {
                    tracing::info!(node = %node.id, version, outcome = ?ack.outcome, "configuration acknowledged");
                    if let Err(e) = node.acknowledge(ack).await {
                        tracing::warn!(node = %node.id, error = %e, "acknowledgement not recorded");
                    }
                }
                Err(e) => {
                    if conn.close_reason().is_some() {
                        return;
                    }
                    tracing::debug!(node = %node.id, version, error = %e, "configuration push failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(PUSH_RETRY) => continue,
                        _ = conn.closed() => return,
                    }
                }
            },
            Ok(false) => {}
            Err(_) => return,
        }
        tokio::select! {
            changed = desired.changed() => if changed.is_err() { return },
            _ = conn.closed() => return,
        }
    }
}

async fn push_once(conn: &Connection, version: u64, config: NodeConfig) -> Result<ConfigAck, TransportError> {
    let config = protocol::wire_config(config);
    match orchestrator::push(conn, &Push::ApplyConfig { version, config }).await? {
        PushReply::ConfigAck(ack) => Ok(protocol::config_ack(ack)),
        other => Err(WireError::Decode(format!("expected a configuration answer, got {other:?}")).into()),
    }
}
