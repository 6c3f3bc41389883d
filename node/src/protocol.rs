//! The cluster protocol's types mapped to the domain's and back. The wire keeps its
//! own types (`cluster::proto`) so that neither side changes by accident when the
//! other does; every mapping destructures its input, so a field added on one side
//! fails to compile here until it is mapped.

use actors::node::{Capabilities, ConfigAck, ConfigOutcome, NodeConfig};
use actors::task::{JobResult, NetworkPolicy};
use cluster::proto;

/// What a node reported, as the domain records it.
pub fn capabilities(wire: proto::Capabilities) -> Capabilities {
    let proto::Capabilities {
        hostname,
        cores,
        memory_bytes,
        disk_bytes,
        arch,
        os,
        docker_version,
        images,
        labels,
        inference,
    } = wire;
    Capabilities { hostname, cores, memory_bytes, disk_bytes, arch, os, docker_version, images, labels, inference }
}

/// What a worker reports about itself, for the wire.
pub fn wire_capabilities(domain: Capabilities) -> proto::Capabilities {
    let Capabilities { hostname, cores, memory_bytes, disk_bytes, arch, os, docker_version, images, labels, inference } =
        domain;
    proto::Capabilities {
        hostname,
        cores,
        memory_bytes,
        disk_bytes,
        arch,
        os,
        docker_version,
        images,
        labels,
        inference,
    }
}

/// A pushed configuration, as the domain checks it.
pub fn node_config(wire: proto::NodeConfig) -> NodeConfig {
    let proto::NodeConfig {
        heartbeat_interval_ms,
        max_concurrent_jobs,
        sandbox_image,
        allowed_network_policies,
        default_memory_bytes,
        default_cpu_millis,
        labels,
    } = wire;
    NodeConfig {
        heartbeat_interval_ms,
        max_concurrent_jobs,
        sandbox_image,
        allowed_network_policies,
        default_memory_bytes,
        default_cpu_millis,
        labels,
    }
}

/// The configuration the orchestrator wants, for the wire.
pub fn wire_config(domain: NodeConfig) -> proto::NodeConfig {
    let NodeConfig {
        heartbeat_interval_ms,
        max_concurrent_jobs,
        sandbox_image,
        allowed_network_policies,
        default_memory_bytes,
        default_cpu_millis,
        labels,
    } = domain;
    proto::NodeConfig {
        heartbeat_interval_ms,
        max_concurrent_jobs,
        sandbox_image,
        allowed_network_policies,
        default_memory_bytes,
        default_cpu_millis,
        labels,
    }
}

/// A node's answer to a configuration.
pub fn config_ack(wire: proto::ConfigAck) -> ConfigAck {
    let outcome = match wire.outcome {
        proto::ConfigOutcome::Applied => ConfigOutcome::Applied,
        proto::ConfigOutcome::Failed { error } => ConfigOutcome::Failed { error },
    };
    ConfigAck { version: wire.version, outcome }
}

/// What a job produced, as the task records it.
pub fn job_result(wire: proto::JobResult) -> JobResult {
    let proto::JobResult {
        exit_code,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        oom_killed,
        timed_out,
        cancelled,
        lease_lost,
        error,
        started_ms,
        finished_ms,
    } = wire;
    JobResult {
        exit_code,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        oom_killed,
        timed_out,
        cancelled,
        lease_lost,
        error,
        started_ms,
        finished_ms,
    }
}

/// A task's network policy, for the job sent to a worker.
pub fn network(domain: NetworkPolicy) -> proto::NetworkPolicy {
    match domain {
        NetworkPolicy::None => proto::NetworkPolicy::None,
        NetworkPolicy::Restricted => proto::NetworkPolicy::Restricted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two sides describe the same thing: mapped values serialize alike.
    #[test]
    fn mapped_values_keep_every_field() {
        let caps = proto::Capabilities {
            hostname: "h".into(),
            cores: 3,
            memory_bytes: 4,
            disk_bytes: 5,
            arch: "x".into(),
            os: "linux".into(),
            docker_version: Some("28".into()),
            images: vec!["i".into()],
            labels: [("gpu".to_owned(), "yes".to_owned())].into(),
            inference: true,
        };
        assert_eq!(json(&capabilities(caps.clone())), json(&caps));
        assert_eq!(wire_capabilities(capabilities(caps.clone())), caps);
        let config = NodeConfig { max_concurrent_jobs: 7, labels: caps.labels.clone(), ..NodeConfig::default() };
        assert_eq!(node_config(wire_config(config.clone())), config);
        let result = proto::JobResult {
            exit_code: Some(3),
            stdout: "o".into(),
            stderr: "e".into(),
            stdout_truncated: true,
            stderr_truncated: true,
            oom_killed: true,
            timed_out: true,
            cancelled: true,
            lease_lost: true,
            error: Some("x".into()),
            started_ms: 1,
            finished_ms: 2,
        };
        assert_eq!(json(&job_result(result.clone())), json(&result));
        let failed = proto::ConfigAck { version: 9, outcome: proto::ConfigOutcome::Failed { error: "no".into() } };
        assert_eq!(config_ack(failed), ConfigAck { version: 9, outcome: ConfigOutcome::Failed { error: "no".into() } });
    }

    fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).unwrap_or_default()
    }
}
