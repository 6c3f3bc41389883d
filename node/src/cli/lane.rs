//! `dispatch lane …` and `dispatch handoff …`: agent lanes and the human decisions they wait for.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ClientArgs, connect, print, strip_nulls};

#[derive(Subcommand)]
pub(super) enum LaneCmd {
    /// A lane: status, checkpoints, handoffs, owner.
    Inspect {
        /// The lane's id.
        id: String,
    },
    /// Escalate (blocks the lane).
    Escalate {
        /// The lane's id.
        id: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Give the lane an escalation owner.
    AssignOwner {
        /// The lane's id.
        id: String,
        /// Who owns the escalation from now on.
        #[arg(long)]
        owner: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Hand the escalation to another owner.
    ReassignOwner {
        /// The lane's id.
        id: String,
        /// Who owns the escalation from now on.
        #[arg(long)]
        owner: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// The lane's escalation owner.
    Owner {
        /// The lane's id.
        id: String,
    },
    /// Unblock an escalated lane: it goes on from its checkpoint.
    Unblock {
        /// The lane's id.
        id: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Close the lane by hand; the reason must start with "human_override:".
    OverrideClose {
        /// The lane's id.
        id: String,
        /// Why; must start with "human_override:".
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub(super) enum HandoffCmd {
    /// Handoffs in your queues.
    List {
        /// Only this queue (one you hold).
        #[arg(long)]
        queue: Option<String>,
        /// Only handoffs in this state: OPEN, DECIDED, EXPIRED or CLOSED.
        #[arg(long)]
        status: Option<String>,
    },
    /// One handoff in your queues: its context, checkpoint, SLA and deadline.
    Show {
        /// The handoff's id (the id of the handoff.requested envelope).
        id: String,
    },
    /// approve | reject | reroute (--reroute-to) | add_context (--context JSON).
    Decide {
        /// The handoff's id (the id of the handoff.requested envelope).
        id: String,
        /// approve, reject, reroute or add_context.
        #[arg(long)]
        action: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
        /// With reroute: the queue to send it to (one you hold).
        #[arg(long)]
        reroute_to: Option<String>,
        /// With add_context: JSON to add to the handoff's context.
        #[arg(long)]
        context: Option<String>,
    },
    /// Callback deliveries that failed every attempt.
    Dlq,
    /// Deliver a dead letter again.
    Replay {
        /// The dead letter's delivery id (from `handoff dlq`).
        id: String,
    },
}

pub(super) fn lane_line(l: &Value) -> String {
    let h = &l["handoff"];
    format!(
        "{}  {:<13} agent={} owner={} handoff={} ({})",
        l["id"].as_str().unwrap_or("?"),
        l["status"].as_str().unwrap_or("?"),
        l["agent"].as_str().unwrap_or("?"),
        l["owner"].as_str().unwrap_or("-"),
        h["handoff_id"].as_str().unwrap_or("-"),
        h["status"].as_str().unwrap_or("-"),
    )
}

pub(super) async fn lane(args: ClientArgs, command: LaneCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let key = || Some(args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()));
    let post = |id: &str, what: &str, body: Value| {
        let (client, path, key) = (&client, format!("/v1/lanes/{id}/{what}"), key());
        async move { client.call(Method::POST, &path, Some(body), key.as_deref()).await }
    };
    let out = match command {
        LaneCmd::Inspect { id } => client.call(Method::GET, &format!("/v1/lanes/{id}"), None, None).await?,
        LaneCmd::Escalate { id, reason } => post(&id, "escalate", json!({ "reason": reason })).await?["lane"].clone(),
        LaneCmd::AssignOwner { id, owner, reason } => {
            post(&id, "assign-owner", json!({ "owner": owner, "reason": reason })).await?["lane"].clone()
        }
        LaneCmd::ReassignOwner { id, owner, reason } => {
            post(&id, "reassign-owner", json!({ "owner": owner, "reason": reason })).await?["lane"].clone()
        }
        LaneCmd::Owner { id } => {
            let out = client.call(Method::GET, &format!("/v1/lanes/{id}/owner"), None, None).await?;
            print(&args, &out, |v| v["owner"].as_str().unwrap_or("(none)").to_owned());
            return Ok(());
        }
        LaneCmd::Unblock { id, reason } => post(&id, "unblock", json!({ "reason": reason })).await?["lane"].clone(),
        LaneCmd::OverrideClose { id, reason } => {
            post(&id, "override-close", json!({ "reason": reason })).await?["lane"].clone()
        }
    };
    print(&args, &out, lane_line);
    Ok(())
}

pub(super) fn handoff_line(h: &Value) -> String {
    format!(
        "{}  {:<8} lane={} queue={} trigger={}{}  {}",
        h["handoff_id"].as_str().unwrap_or("?"),
        h["status"].as_str().unwrap_or("?"),
        h["lane_id"].as_str().unwrap_or("?"),
        h["queue"].as_str().unwrap_or("?"),
        h["trigger_class"].as_str().unwrap_or("?"),
        if h["escalated"] == true { " ESCALATED" } else { "" },
        h["reason"].as_str().unwrap_or_default(),
    )
}

pub(super) async fn handoff(args: ClientArgs, command: HandoffCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    match command {
        HandoffCmd::List { queue, status } => {
            let query: Vec<String> = [("queue", queue), ("status", status)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
                .collect();
            let out = client.call(Method::GET, &format!("/v1/handoffs?{}", query.join("&")), None, None).await?;
            print(&args, &out, |v| {
                v["handoffs"].as_array().into_iter().flatten().map(handoff_line).collect::<Vec<_>>().join("\n")
            });
        }
        HandoffCmd::Show { id } => {
            let out = client.call(Method::GET, &format!("/v1/handoffs/{id}"), None, None).await?;
            print(&args, &out, handoff_line);
        }
        HandoffCmd::Decide { id, action, reason, reroute_to, context } => {
            let context = match context {
                Some(c) => {
                    Some(serde_json::from_str::<Value>(&c).map_err(|e| anyhow::anyhow!("--context is not JSON: {e}"))?)
                }
                None => None,
            };
            let mut body = json!({ "action": action, "reason": reason, "reroute_to": reroute_to, "context": context });
            strip_nulls(&mut body);
            let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let out = client.call(Method::POST, &format!("/v1/handoffs/{id}/decision"), Some(body), Some(&key)).await?;
            print(&args, &out, |v| lane_line(&v["lane"]));
        }
        HandoffCmd::Dlq => {
            let out = client.call(Method::GET, "/v1/dlq", None, None).await?;
            print(&args, &out, |v| {
                v["deliveries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!(
                            "{}  lane={} attempts={} last_error={}",
                            d["id"].as_str().unwrap_or("?"),
                            d["lane_id"].as_str().unwrap_or("?"),
                            d["attempts"],
                            d["last_error"].as_str().unwrap_or("-")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        HandoffCmd::Replay { id } => {
            let out = client.call(Method::POST, &format!("/v1/dlq/{id}/replay"), None, None).await?;
            print(&args, &out, |v| format!("requeued {}", v["delivery"].as_str().unwrap_or("?")));
        }
    }
    Ok(())
}
