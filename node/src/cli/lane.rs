//! `dispatch lane …` and `dispatch handoff …`: agent lanes and the human decisions they wait for.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::table::{Table, at_ms, cell};
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
    /// The engineering view: HITL rate, decision mix and latencies by trigger class (no content).
    Insights,
    /// Deliver a dead letter again.
    Replay {
        /// The dead letter's delivery id (from `handoff dlq`).
        id: String,
    },
}

/// A lane: its state, owner, current handoff and checkpoints.
pub(super) fn lane_line(l: &Value) -> String {
    let h = &l["handoff"];
    let handoff = if h.is_null() {
        "-".to_owned()
    } else {
        format!("{} ({}), queue {}", cell(&h["handoff_id"]), cell(&h["status"]), cell(&h["queue"]))
    };
    let checkpoints: Vec<String> = l["checkpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} ({})", cell(&c["name"]), at_ms(c["at_ms"].as_i64().unwrap_or(0))))
        .collect();
    [
        format!("{}  {}", cell(&l["id"]), cell(&l["status"])),
        format!("  agent:       {}", cell(&l["agent"])),
        format!("  owner:       {}", cell(&l["owner"])),
        format!("  handoff:     {handoff}   ({} in all)", cell(&l["handoffs"])),
        format!("  checkpoints: {}", if checkpoints.is_empty() { "-".into() } else { checkpoints.join(", ") }),
    ]
    .join("\n")
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

const HANDOFF_HEADERS: [&str; 8] = ["HANDOFF", "STATUS", "LANE", "QUEUE", "TRIGGER", "SLA DUE", "DEADLINE", "REASON"];

/// One handoff as a row of the queue.
fn handoff_row(h: &Value) -> Vec<String> {
    let r = h; // the request's fields are flattened into the handoff
    let status = format!("{}{}", cell(&h["status"]), if h["escalated"] == true { " ESCALATED" } else { "" });
    let due = |k: &str| r[k].as_i64().map_or("-".into(), at_ms);
    let (id, lane, queue, trigger) =
        (cell(&r["handoff_id"]), cell(&h["lane_id"]), cell(&r["queue"]), cell(&r["trigger_class"]));
    vec![id, status, lane, queue, trigger, due("sla_due_ms"), due("deadline_ms"), cell(&r["reason"])]
}

/// One handoff in full: the row, then its checkpoint, context and decision.
pub(super) fn handoff_line(h: &Value) -> String {
    let mut table = Table::new(&HANDOFF_HEADERS);
    table.row(handoff_row(h));
    let context = serde_json::to_string_pretty(&h["context"]).unwrap_or_default();
    format!(
        "{}\n  checkpoint: {}\n  decision:   {}\n  context:    {}",
        table.render(""),
        cell(&h["checkpoint"]),
        cell(&h["decision"]["action"]),
        context.replace('\n', "\n              ")
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
                let mut table = Table::new(&HANDOFF_HEADERS);
                v["handoffs"].as_array().into_iter().flatten().for_each(|h| table.row(handoff_row(h)));
                table.render("no handoffs in your queues match")
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
                let mut table = Table::new(&["DELIVERY", "LANE", "ATTEMPTS", "LAST ERROR"]);
                for d in v["deliveries"].as_array().into_iter().flatten() {
                    table.row(
                        [&d["id"], &d["lane_id"], &d["attempts"], &d["last_error"]].into_iter().map(cell).collect(),
                    );
                }
                table.render("the dead-letter queue is empty")
            });
        }
        HandoffCmd::Insights => {
            let out = client.call(Method::GET, "/v1/insights/handoffs", None, None).await?;
            print(&args, &out, super::views::insights);
        }
        HandoffCmd::Replay { id } => {
            let out = client.call(Method::POST, &format!("/v1/dlq/{id}/replay"), None, None).await?;
            print(&args, &out, |v| format!("requeued {}", v["delivery"].as_str().unwrap_or("?")));
        }
    }
    Ok(())
}
