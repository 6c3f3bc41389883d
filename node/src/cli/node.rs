//! `dispatch token …` and `dispatch node …`: bootstrap tokens and worker nodes.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ClientArgs, connect, parse_label, print, split, strip_nulls};

#[derive(Subcommand)]
pub(super) enum TokenCmd {
    /// Create a bootstrap token; prints it once.
    Create {
        /// Lifetime: 90s, 15m, 2h, 1d.
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        ttl: u64,
        /// How many hosts may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Label for nodes joining with it (k=v, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List tokens with their remaining uses.
    List,
    /// Revoke a token by id.
    Revoke {
        /// The bootstrap token's id.
        id: String,
    },
}

// Parsed once per process: the size of the `run` variant does not matter.

#[derive(Subcommand)]
pub(super) enum NodeCmd {
    /// List nodes.
    List,
    /// Show one node.
    Show {
        /// The node's id, e.g. node-1.
        id: String,
    },
    /// Give the node no new work.
    Drain {
        /// The node's id, e.g. node-1.
        id: String,
    },
    /// Remove the node; its certificate is refused from then on.
    Remove {
        /// The node's id, e.g. node-1.
        id: String,
        /// Remove it even if it is the worker running inside `dispatch up`.
        #[arg(long)]
        force: bool,
    },
    /// Node configuration.
    Config {
        #[command(subcommand)]
        command: NodeConfigCmd,
    },
}

#[derive(Subcommand)]
pub(super) enum NodeConfigCmd {
    /// Change fields of a node's configuration (bumps its config_version).
    Set {
        /// The node's id, e.g. node-1.
        id: String,
        /// Milliseconds between the node's heartbeats.
        #[arg(long)]
        heartbeat_interval_ms: Option<u64>,
        /// Most jobs the node runs at once.
        #[arg(long)]
        max_concurrent_jobs: Option<u32>,
        /// The image jobs run in when a task names none.
        #[arg(long)]
        sandbox_image: Option<String>,
        /// Comma-separated: none, restricted.
        #[arg(long)]
        network_policies: Option<String>,
        /// Memory a job gets when its task sets no limit, in bytes.
        #[arg(long)]
        default_memory_bytes: Option<u64>,
        /// CPU a job gets when its task sets no limit, in thousandths of a core.
        #[arg(long)]
        default_cpu_millis: Option<u32>,
        /// Replace the node's labels (k=v, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Option<Vec<(String, String)>>,
    },
}

/// Seconds from `90s`, `15m`, `2h`, `1d` or a bare number of seconds.
pub(super) fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("expected a duration like 15m, got {s:?}"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (s, m, h, d)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too long"))
}

pub(super) async fn join_token(args: ClientArgs, command: TokenCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let line = |t: &Value| {
        format!(
            "{}  uses {}/{}  expires_ms={}{}  labels={}",
            t["id"].as_str().unwrap_or("?"),
            t["uses"],
            t["uses_allowed"],
            t["expires_ms"],
            if t["revoked"] == true { "  REVOKED" } else { "" },
            t["labels"],
        )
    };
    match command {
        TokenCmd::Create { ttl, uses, labels } => {
            let labels: serde_json::Map<String, Value> =
                labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let body = json!({ "ttl_seconds": ttl, "uses": uses, "labels": labels });
            let out = client.call(Method::POST, "/v1/join-tokens", Some(body), None).await?;
            print(&args, &out, |v| v["token"].as_str().unwrap_or_default().to_owned());
        }
        TokenCmd::List => {
            let out = client.call(Method::GET, "/v1/join-tokens", None, None).await?;
            print(&args, &out, |v| {
                v["tokens"].as_array().into_iter().flatten().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        TokenCmd::Revoke { id } => {
            let out = client.call(Method::POST, &format!("/v1/join-tokens/{id}/revoke"), None, None).await?;
            print(&args, &out, line);
        }
    }
    Ok(())
}

pub(super) fn node_line(n: &Value) -> String {
    let ack = &n["config_ack"];
    format!(
        "{:<10} {:<12} {:<20} config v{} (acked {})  cores={} docker={}",
        n["id"].as_str().unwrap_or("?"),
        n["state"].as_str().unwrap_or("?"),
        n["capabilities"]["hostname"].as_str().unwrap_or("?"),
        n["config_version"],
        match ack["outcome"].as_str() {
            _ if ack.is_null() => "none".to_owned(),
            Some(outcome) => format!("v{} {outcome}", ack["version"]),
            None => format!("v{} failed: {}", ack["version"], ack["outcome"]["failed"]["error"]),
        },
        n["capabilities"]["cores"],
        n["capabilities"]["docker_version"].as_str().unwrap_or("none"),
    )
}

pub(super) async fn node(args: ClientArgs, command: NodeCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let out = match command {
        NodeCmd::List => {
            let out = client.call(Method::GET, "/v1/nodes", None, None).await?;
            print(&args, &out, |v| {
                v["nodes"].as_array().into_iter().flatten().map(node_line).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
        NodeCmd::Show { id } => client.call(Method::GET, &format!("/v1/nodes/{id}"), None, None).await?,
        NodeCmd::Drain { id } => client.call(Method::POST, &format!("/v1/nodes/{id}/drain"), None, None).await?,
        NodeCmd::Remove { id, force } => {
            client.call(Method::POST, &format!("/v1/nodes/{id}/remove?force={force}"), None, None).await?
        }
        NodeCmd::Config {
            command:
                NodeConfigCmd::Set {
                    id,
                    heartbeat_interval_ms,
                    max_concurrent_jobs,
                    sandbox_image,
                    network_policies,
                    default_memory_bytes,
                    default_cpu_millis,
                    labels,
                },
        } => {
            let mut body = json!({
                "heartbeat_interval_ms": heartbeat_interval_ms,
                "max_concurrent_jobs": max_concurrent_jobs,
                "sandbox_image": sandbox_image,
                "allowed_network_policies": network_policies.as_deref().map(split),
                "default_memory_bytes": default_memory_bytes,
                "default_cpu_millis": default_cpu_millis,
                "labels": labels.map(|l| l.into_iter().collect::<std::collections::BTreeMap<_, _>>()),
            });
            strip_nulls(&mut body);
            client.call(Method::PUT, &format!("/v1/nodes/{id}/config"), Some(body), None).await?
        }
    };
    print(&args, &out, node_line);
    Ok(())
}
