//! `dispatch ticket …`: work orders through their lifecycle.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ClientArgs, connect, print};
use crate::client::ClientError;

#[derive(Subcommand)]
pub(super) enum TicketCmd {
    /// Open a ticket.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        incident_type: String,
        #[arg(long)]
        summary: String,
        #[arg(long)]
        priority: Option<String>,
    },
    /// Triage: --outcome TRIAGED | READY_TO_SCHEDULE | APPROVAL_REQUIRED.
    Triage {
        id: String,
        #[arg(long)]
        outcome: String,
        #[arg(long)]
        priority: Option<String>,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Propose windows, each START/END in RFC 3339.
    Propose {
        id: String,
        #[arg(long = "window", required = true)]
        windows: Vec<String>,
    },
    /// Confirm a proposed window START/END.
    Confirm {
        id: String,
        #[arg(long)]
        window: String,
    },
    /// A manager confirms an emergency bypass; prints the confirmation for the dispatcher.
    ConfirmBypass {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Dispatch a technician; with --emergency-reason and --manager-confirmation (what
    /// `confirm-bypass` printed for a manager), as an emergency bypass.
    Dispatch {
        id: String,
        #[arg(long)]
        technician: String,
        #[arg(long, requires = "manager_confirmation")]
        emergency_reason: Option<String>,
        #[arg(long)]
        manager_confirmation: Option<String>,
    },
    /// Check in on site (assigned technician).
    CheckIn { id: String },
    /// Ask for approval of a change (assigned technician).
    RequestChange {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        summary: String,
    },
    /// Decide a pending approval: --decision approved | denied.
    Decide {
        id: String,
        #[arg(long)]
        decision: String,
        #[arg(long)]
        reason: String,
    },
    /// Attach evidence: a --file to upload, or an existing --uri.
    Evidence {
        id: String,
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "photo")]
        kind: String,
        #[arg(long, conflicts_with = "uri")]
        file: Option<PathBuf>,
        #[arg(long)]
        uri: Option<String>,
    },
    /// Complete the work; --done ITEM for each checklist item done.
    Complete {
        id: String,
        #[arg(long = "done")]
        done: Vec<String>,
        #[arg(long)]
        no_signature_reason: Option<String>,
    },
    /// Verify completed work.
    Verify {
        id: String,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Invoice verified work.
    Invoice {
        id: String,
        #[arg(long)]
        amount_cents: i64,
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// Close an invoiced ticket.
    Close { id: String },
    /// Cancel an open ticket.
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Show a ticket.
    Get { id: String },
    /// Show a ticket's audit timeline.
    Timeline { id: String },
    /// List tickets, oldest first, 1000 a page.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        site: Option<String>,
        /// Start after this ticket id (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
    },
}

pub(super) fn ticket_line(t: &Value) -> String {
    format!(
        "{}  {:<30} v{:<3} {} @ {}  {}",
        t["id"].as_str().unwrap_or("?"),
        t["state"].as_str().unwrap_or("?"),
        t["version"],
        t["incident_type"].as_str().unwrap_or("?"),
        t["site_id"].as_str().unwrap_or("?"),
        t["technician_id"].as_str().map(|s| format!("tech={s}")).unwrap_or_default(),
    )
}

pub(super) fn window(s: &str) -> anyhow::Result<Value> {
    let (start, end) = s.split_once('/').ok_or_else(|| anyhow::anyhow!("a window is START/END, got {s:?}"))?;
    Ok(json!({ "start": start, "end": end }))
}

pub(super) async fn ticket(args: ClientArgs, command: TicketCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let post = |path: String, body: Value| {
        let client = &client;
        let key = key.clone();
        async move { client.call(Method::POST, &path, Some(body), Some(&key)).await }
    };
    let t = |id: &str, action: &str| format!("/v1/tickets/{id}/{action}");
    let result: Result<Value, ClientError> = match command {
        TicketCmd::Create { account, site, incident_type, summary, priority } => {
            post("/v1/tickets".into(), json!({ "account_id": account, "site_id": site, "incident_type": incident_type, "summary": summary, "priority": priority })).await
        }
        TicketCmd::Triage { id, outcome, priority, notes } => {
            post(t(&id, "triage"), json!({ "workflow_outcome": outcome, "priority": priority, "notes": notes })).await
        }
        TicketCmd::Propose { id, windows } => {
            let windows = windows.iter().map(|w| window(w)).collect::<anyhow::Result<Vec<_>>>()?;
            post(t(&id, "schedule/propose"), json!({ "windows": windows })).await
        }
        TicketCmd::Confirm { id, window: w } => post(t(&id, "schedule/confirm"), json!({ "window": window(&w)? })).await,
        TicketCmd::ConfirmBypass { id, reason } => {
            let out = client.call(Method::POST, &t(&id, "assignment/bypass-confirmation"), Some(json!({ "reason": reason })), None).await?;
            print(&args, &out, |v| v["confirmation"].as_str().unwrap_or_default().to_owned());
            return Ok(());
        }
        TicketCmd::Dispatch { id, technician, emergency_reason, manager_confirmation } => {
            let mode = if emergency_reason.is_some() { "EMERGENCY_BYPASS" } else { "STANDARD" };
            post(t(&id, "assignment/dispatch"), json!({ "technician_id": technician, "dispatch_mode": mode, "reason": emergency_reason, "manager_confirmation": manager_confirmation })).await
        }
        TicketCmd::CheckIn { id } => post(t(&id, "tech/check-in"), json!({})).await,
        TicketCmd::RequestChange { id, reason, summary } => {
            post(t(&id, "tech/request-change"), json!({ "reason": reason, "change_summary": summary })).await
        }
        TicketCmd::Decide { id, decision, reason } => post(t(&id, "approval/decide"), json!({ "decision": decision, "reason": reason })).await,
        TicketCmd::Evidence { id, key: evidence_key, kind, file, uri } => {
            let uri = match (file, uri) {
                (Some(file), _) => {
                    let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
                    client.upload("/v1/blobs", bytes).await?["uri"].as_str().unwrap_or_default().to_owned()
                }
                (None, Some(uri)) => uri,
                (None, None) => anyhow::bail!("give --file to upload or --uri of a stored blob"),
            };
            post(t(&id, "evidence"), json!({ "kind": kind, "uri": uri, "evidence_key": evidence_key })).await
        }
        TicketCmd::Complete { id, done, no_signature_reason } => {
            let checklist: serde_json::Map<String, Value> = done.into_iter().map(|i| (i, Value::Bool(true))).collect();
            post(t(&id, "tech/complete"), json!({ "checklist": checklist, "no_signature_reason": no_signature_reason })).await
        }
        TicketCmd::Verify { id, notes } => post(t(&id, "qa/verify"), json!({ "notes": notes })).await,
        TicketCmd::Invoice { id, amount_cents, currency } => {
            post(t(&id, "billing/generate-invoice"), json!({ "amount_cents": amount_cents, "currency": currency })).await
        }
        TicketCmd::Close { id } => post(t(&id, "close"), json!({})).await,
        TicketCmd::Cancel { id, reason } => post(t(&id, "cancel"), json!({ "reason": reason })).await,
        TicketCmd::Get { id } => client.call(Method::GET, &format!("/v1/tickets/{id}"), None, None).await,
        TicketCmd::Timeline { id } => {
            let out = client.call(Method::GET, &t(&id, "timeline"), None, None).await?;
            print(&args, &out, |v| {
                v["events"].as_array().into_iter().flatten().map(|e| format!(
                    "#{:<3} {}  {:<28} {:>30} -> {:<30} {} ({})",
                    e["seq"], e["occurred_at"].as_str().unwrap_or(""), e["kind"].as_str().unwrap_or(""),
                    e["before_state"].as_str().unwrap_or("-"), e["after_state"].as_str().unwrap_or("-"),
                    e["actor"]["id"].as_str().unwrap_or(""), e["actor"]["role"].as_str().unwrap_or(""),
                )).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
        TicketCmd::List { state, site, after } => {
            let mut path = "/v1/tickets?limit=1000".to_owned();
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            if let Some(s) = state {
                path.push_str(&format!("&state={s}"));
            }
            if let Some(s) = site {
                path.push_str(&format!("&site_id={s}"));
            }
            let out = client.call(Method::GET, &path, None, None).await?;
            print(&args, &out, |v| {
                let mut lines: Vec<String> = v["tickets"].as_array().into_iter().flatten().map(ticket_line).collect();
                if let Some(next) = v["next_after"].as_str() {
                    lines.push(format!("… more: dispatch ticket list --after {next}"));
                }
                lines.join("\n")
            });
            return Ok(());
        }
    };
    match result {
        Ok(out) => {
            print(&args, &out, ticket_line);
            Ok(())
        }
        Err(ClientError::Api { status, code, message, details }) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "error": { "status": status, "code": code, "message": message, "details": details } })
                );
            }
            let extra =
                if details.as_object().is_some_and(|d| !d.is_empty()) { format!(" {details}") } else { String::new() };
            anyhow::bail!("{code} ({status}): {message}{extra}")
        }
        Err(e) => Err(e.into()),
    }
}
