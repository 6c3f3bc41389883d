//! `dispatch token …` and `dispatch node …`: bootstrap tokens and worker nodes.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::table::{Table, at_ms, cell};
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
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let state = |t: &Value| match () {
        _ if t["revoked"] == true => "REVOKED",
        _ if t["expires_ms"].as_i64().is_some_and(|e| e <= now_ms) => "EXPIRED",
        _ if t["uses"] == t["uses_allowed"] => "USED UP",
        _ => "usable",
    };
    let row = |t: &Value| {
        let uses = format!("{}/{}", t["uses"], t["uses_allowed"]);
        vec![cell(&t["id"]), state(t).into(), uses, at_ms(t["expires_ms"].as_i64().unwrap_or(0)), cell(&t["labels"])]
    };
    let headers = ["ID", "STATE", "USES", "EXPIRES", "LABELS"];
    let line = |t: &Value| {
        let mut table = Table::new(&headers);
        table.row(row(t));
        table.render("")
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
                let mut table = Table::new(&headers);
                v["tokens"].as_array().into_iter().flatten().for_each(|t| table.row(row(t)));
                table.render("no bootstrap tokens (`dispatch token create` makes one)")
            });
        }
        TokenCmd::Revoke { id } => {
            let out = client.call(Method::POST, &format!("/v1/join-tokens/{id}/revoke"), None, None).await?;
            print(&args, &out, line);
        }
    }
    Ok(())
}

/// A node's configuration version and what the node said of it.
fn config_cell(n: &Value) -> String {
    let ack = &n["config_ack"];
    let said = match ack["outcome"].as_str() {
        _ if ack.is_null() => "not acknowledged".to_owned(),
        Some(outcome) => format!("v{} {outcome}", ack["version"]),
        None => format!("v{} failed: {}", ack["version"], cell(&ack["outcome"]["failed"]["error"])),
    };
    format!("v{} ({said})", n["config_version"])
}

/// The images the node reports, and whether the one its jobs run in by default is there
/// (the default sandbox image is built from the host's busybox on first use).
fn images_cell(n: &Value) -> String {
    let images: Vec<&str> =
        n["capabilities"]["images"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let wanted = n["config"]["sandbox_image"].as_str().unwrap_or(crate::sandbox::DEFAULT_IMAGE);
    let standing = if images.contains(&wanted) {
        format!("{wanted} present")
    } else {
        format!("{wanted} NOT present (the default is built from the host's busybox on first use)")
    };
    format!("{standing}; {} in all", images.len())
}

/// The labels placement goes by: the join token's, then the configuration's.
fn given_labels(n: &Value) -> Value {
    let mut labels = n["token_labels"].as_object().cloned().unwrap_or_default();
    labels.extend(n["config"]["labels"].as_object().cloned().unwrap_or_default());
    Value::Object(labels)
}

fn nodes_table(v: &Value) -> String {
    let mut t = Table::new(&["ID", "STATE", "HOST", "CONFIG", "ENGINE", "LABELS"]);
    for n in v["nodes"].as_array().into_iter().flatten() {
        let engine = n["capabilities"]["docker_version"].as_str().map_or("none".into(), |d| format!("docker {d}"));
        t.row(vec![
            cell(&n["id"]),
            cell(&n["state"]),
            cell(&n["capabilities"]["hostname"]),
            config_cell(n),
            engine,
            cell(&given_labels(n)),
        ]);
    }
    t.render("no worker nodes (`dispatch token create`, then `dispatch agent --role worker --token …`)")
}

/// One node, every field a person asks about.
pub(super) fn node_line(n: &Value) -> String {
    let caps = &n["capabilities"];
    [
        format!("{}  {}{}", cell(&n["id"]), cell(&n["state"]), if n["draining"] == true { " (draining)" } else { "" }),
        format!("  host:     {}  ({} cores)", cell(&caps["hostname"]), cell(&caps["cores"])),
        format!("  engine:   {}", caps["docker_version"].as_str().map_or("none".into(), |d| format!("docker {d}"))),
        format!("  config:   {}", config_cell(n)),
        format!("  images:   {}", images_cell(n)),
        format!("  labels:   {}   (the node reports: {})", cell(&given_labels(n)), cell(&caps["labels"])),
        format!("  joined:   {}", at_ms(n["joined_ms"].as_i64().unwrap_or(0))),
    ]
    .join("\n")
}

pub(super) async fn node(args: ClientArgs, command: NodeCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let out = match command {
        NodeCmd::List => {
            let out = client.call(Method::GET, "/v1/nodes", None, None).await?;
            print(&args, &out, nodes_table);
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
