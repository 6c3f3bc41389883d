//! `dispatch ticket …`: work orders through their lifecycle.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::table::{Table, cell};
use super::{ClientArgs, connect, print};
use crate::client::{Client, ClientError};

#[derive(Subcommand)]
pub(super) enum TicketCmd {
    /// Open a ticket.
    Create {
        /// The customer account.
        #[arg(long)]
        account: String,
        /// The site at that account.
        #[arg(long)]
        site: String,
        /// An incident type from the templates (`GET /v1/incident-templates`), e.g. DOOR_WONT_LATCH.
        #[arg(long)]
        incident_type: String,
        /// What is wrong, in a sentence.
        #[arg(long)]
        summary: String,
        /// EMERGENCY, HIGH, NORMAL (default) or LOW.
        #[arg(long)]
        priority: Option<String>,
    },
    /// Triage: --outcome TRIAGED | READY_TO_SCHEDULE | APPROVAL_REQUIRED.
    Triage {
        /// The ticket's id (a UUID).
        id: String,
        /// Where triage sends it: TRIAGED, READY_TO_SCHEDULE or APPROVAL_REQUIRED.
        #[arg(long)]
        outcome: String,
        /// A new priority.
        #[arg(long)]
        priority: Option<String>,
        /// Triage notes.
        #[arg(long)]
        notes: Option<String>,
    },
    /// Propose windows, each START/END in RFC 3339.
    Propose {
        /// The ticket's id (a UUID).
        id: String,
        /// A window, START/END in RFC 3339 (repeat for more).
        #[arg(long = "window", required = true)]
        windows: Vec<String>,
    },
    /// Confirm a proposed window START/END.
    Confirm {
        /// The ticket's id (a UUID).
        id: String,
        /// The proposed window to confirm, START/END in RFC 3339.
        #[arg(long)]
        window: String,
    },
    /// A manager confirms an emergency bypass; prints the confirmation for the dispatcher.
    ConfirmBypass {
        /// The ticket's id (a UUID).
        id: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Dispatch a technician; with --emergency-reason and --manager-confirmation (what
    /// `confirm-bypass` printed for a manager), as an emergency bypass.
    Dispatch {
        /// The ticket's id (a UUID).
        id: String,
        /// The technician to send.
        #[arg(long)]
        technician: String,
        /// From TRIAGED only: why this is an emergency bypass.
        #[arg(long, requires = "manager_confirmation")]
        emergency_reason: Option<String>,
        /// A manager's bypass confirmation token (`ticket confirm-bypass`).
        #[arg(long)]
        manager_confirmation: Option<String>,
    },
    /// Check in on site (assigned technician).
    CheckIn {
        /// The ticket's id (a UUID).
        id: String,
    },
    /// Ask for approval of a change (assigned technician).
    RequestChange {
        /// The ticket's id (a UUID).
        id: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
        /// The change of scope asked for.
        #[arg(long)]
        summary: String,
    },
    /// Decide a pending approval: --decision approved | denied.
    Decide {
        /// The ticket's id (a UUID).
        id: String,
        /// approved or denied.
        #[arg(long)]
        decision: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Attach evidence: a --file to upload, or an existing --uri.
    Evidence {
        /// The ticket's id (a UUID).
        id: String,
        /// The evidence key the template asks for, e.g. photo_after.
        #[arg(long)]
        key: String,
        /// What it is, free text (photo, signature, document …).
        #[arg(long, default_value = "photo")]
        kind: String,
        /// A local file to upload and attach.
        #[arg(long, conflicts_with = "uri")]
        file: Option<PathBuf>,
        /// An already uploaded blob's URI (from `dispatch blob`).
        #[arg(long)]
        uri: Option<String>,
    },
    /// Complete the work; --done ITEM for each checklist item done.
    Complete {
        /// The ticket's id (a UUID).
        id: String,
        /// A checklist item done (repeat for each).
        #[arg(long = "done")]
        done: Vec<String>,
        /// Why there is no customer signature.
        #[arg(long)]
        no_signature_reason: Option<String>,
    },
    /// Verify completed work.
    Verify {
        /// The ticket's id (a UUID).
        id: String,
        /// Verification notes.
        #[arg(long)]
        notes: Option<String>,
    },
    /// Invoice verified work.
    Invoice {
        /// The ticket's id (a UUID).
        id: String,
        /// The amount in cents.
        #[arg(long)]
        amount_cents: i64,
        /// ISO 4217 code, e.g. EUR.
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// Close an invoiced ticket.
    Close {
        /// The ticket's id (a UUID).
        id: String,
    },
    /// Cancel an open ticket.
    Cancel {
        /// The ticket's id (a UUID).
        id: String,
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Show a ticket.
    Get {
        /// The ticket's id (a UUID).
        id: String,
    },
    /// Show a ticket's audit timeline.
    Timeline {
        /// The ticket's id (a UUID).
        id: String,
    },
    /// The incident templates: what closeout needs per incident type.
    Templates,
    /// The dispatcher cockpit: open tickets, most urgent SLA first, with the actions you may take.
    Cockpit,
    /// A technician's job packet: site, scope, window, checklist and what still blocks closeout.
    Packet {
        /// The ticket's id (a UUID).
        id: String,
    },
    /// List tickets, oldest first, 1000 a page.
    List {
        /// Only tickets in this state, e.g. NEW.
        #[arg(long)]
        state: Option<String>,
        /// Only tickets at this site.
        #[arg(long)]
        site: Option<String>,
        /// Start after this ticket id (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
    },
}

/// A ticket's timeline: every event with its actor, the tool that caused it and the
/// start of its hash (its link in the stream's hash chain).
fn timeline_table(v: &Value) -> String {
    let mut t = Table::new(&["SEQ", "AT", "EVENT", "FROM", "TO", "ACTOR", "TOOL", "HASH"]);
    for e in v["events"].as_array().into_iter().flatten() {
        let actor = format!("{} ({})", cell(&e["actor"]["id"]), cell(&e["actor"]["role"]));
        let hash: String = e["hash"].as_str().unwrap_or("-").chars().take(12).collect();
        t.row(vec![
            cell(&e["seq"]),
            cell(&e["occurred_at"]),
            cell(&e["kind"]),
            cell(&e["before_state"]),
            cell(&e["after_state"]),
            actor,
            cell(&e["tool"]),
            hash,
        ]);
    }
    t.render("no events")
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
    let (path, body) = match command {
        TicketCmd::Timeline { .. }
        | TicketCmd::List { .. }
        | TicketCmd::ConfirmBypass { .. }
        | TicketCmd::Templates
        | TicketCmd::Cockpit
        | TicketCmd::Packet { .. } => {
            return read(&args, &client, command).await;
        }
        TicketCmd::Evidence { id, key, kind, file, uri } => {
            let uri = match (file, uri) {
                (Some(file), _) => {
                    let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
                    client.upload("/v1/blobs", bytes).await?["uri"].as_str().unwrap_or_default().to_owned()
                }
                (None, Some(uri)) => uri,
                (None, None) => anyhow::bail!("give --file to upload or --uri of a stored blob"),
            };
            (format!("/v1/tickets/{id}/evidence"), Some(json!({ "kind": kind, "uri": uri, "evidence_key": key })))
        }
        command => command_request(command)?,
    };
    let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let answer = match body {
        Some(body) => client.call(Method::POST, &path, Some(body), Some(&key)).await,
        None => client.call(Method::GET, &path, None, None).await,
    };
    match answer {
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

/// The route and body of a ticket command (no body: a read of the ticket).
fn command_request(command: TicketCmd) -> anyhow::Result<(String, Option<Value>)> {
    let t = |id: &str, action: &str| format!("/v1/tickets/{id}/{action}");
    let (path, body) = match command {
        TicketCmd::Get { id } => return Ok((format!("/v1/tickets/{id}"), None)),
        TicketCmd::Create { account, site, incident_type, summary, priority } => (
            "/v1/tickets".into(),
            json!({ "account_id": account, "site_id": site, "incident_type": incident_type, "summary": summary, "priority": priority }),
        ),
        TicketCmd::Triage { id, outcome, priority, notes } => {
            (t(&id, "triage"), json!({ "workflow_outcome": outcome, "priority": priority, "notes": notes }))
        }
        TicketCmd::Propose { id, windows } => {
            let windows = windows.iter().map(|w| window(w)).collect::<anyhow::Result<Vec<_>>>()?;
            (t(&id, "schedule/propose"), json!({ "windows": windows }))
        }
        TicketCmd::Confirm { id, window: w } => (t(&id, "schedule/confirm"), json!({ "window": window(&w)? })),
        TicketCmd::Dispatch { id, technician, emergency_reason, manager_confirmation } => {
            let mode = if emergency_reason.is_some() { "EMERGENCY_BYPASS" } else { "STANDARD" };
            (
                t(&id, "assignment/dispatch"),
                json!({ "technician_id": technician, "dispatch_mode": mode, "reason": emergency_reason, "manager_confirmation": manager_confirmation }),
            )
        }
        TicketCmd::CheckIn { id } => (t(&id, "tech/check-in"), json!({})),
        TicketCmd::RequestChange { id, reason, summary } => {
            (t(&id, "tech/request-change"), json!({ "reason": reason, "change_summary": summary }))
        }
        TicketCmd::Decide { id, decision, reason } => {
            (t(&id, "approval/decide"), json!({ "decision": decision, "reason": reason }))
        }
        TicketCmd::Complete { id, done, no_signature_reason } => {
            let checklist: serde_json::Map<String, Value> = done.into_iter().map(|i| (i, Value::Bool(true))).collect();
            (t(&id, "tech/complete"), json!({ "checklist": checklist, "no_signature_reason": no_signature_reason }))
        }
        TicketCmd::Verify { id, notes } => (t(&id, "qa/verify"), json!({ "notes": notes })),
        TicketCmd::Invoice { id, amount_cents, currency } => {
            (t(&id, "billing/generate-invoice"), json!({ "amount_cents": amount_cents, "currency": currency }))
        }
        TicketCmd::Close { id } => (t(&id, "close"), json!({})),
        TicketCmd::Cancel { id, reason } => (t(&id, "cancel"), json!({ "reason": reason })),
        TicketCmd::Evidence { .. }
        | TicketCmd::Timeline { .. }
        | TicketCmd::List { .. }
        | TicketCmd::ConfirmBypass { .. }
        | TicketCmd::Templates
        | TicketCmd::Cockpit
        | TicketCmd::Packet { .. } => anyhow::bail!("not a ticket command"),
    };
    Ok((path, Some(body)))
}

/// Reads (and the bypass confirmation, which a manager signs without a key).
async fn read(args: &ClientArgs, client: &Client, command: TicketCmd) -> anyhow::Result<()> {
    match command {
        TicketCmd::ConfirmBypass { id, reason } => {
            let path = format!("/v1/tickets/{id}/assignment/bypass-confirmation");
            let out = client.call(Method::POST, &path, Some(json!({ "reason": reason })), None).await?;
            print(args, &out, |v| v["confirmation"].as_str().unwrap_or_default().to_owned());
        }
        TicketCmd::Timeline { id } => {
            let out = client.call(Method::GET, &format!("/v1/tickets/{id}/timeline"), None, None).await?;
            print(args, &out, timeline_table);
        }
        TicketCmd::List { state, site, after } => {
            let mut path = "/v1/tickets?limit=1000".to_owned();
            for (name, value) in [("after", after), ("state", state), ("site_id", site)] {
                if let Some(v) = value {
                    path.push_str(&format!("&{name}={v}"));
                }
            }
            let out = client.call(Method::GET, &path, None, None).await?;
            print(args, &out, |v| {
                let mut t = Table::new(&["ID", "STATE", "PRIORITY", "TYPE", "SITE", "TECHNICIAN", "UPDATED"])
                    .wide(&["ACCOUNT", "VERSION", "CREATED", "SUMMARY"]);
                for k in v["tickets"].as_array().into_iter().flatten() {
                    let cells = ["id", "state", "priority", "incident_type", "site_id", "technician_id", "updated_at"];
                    let wide = ["account_id", "version", "created_at", "summary"];
                    t.row(cells.iter().chain(&wide).map(|c| cell(&k[*c])).collect());
                }
                let mut out = t.render("no tickets match");
                if let Some(next) = v["next_after"].as_str() {
                    out.push_str(&format!("\n… more: dispatch ticket list --after {next}"));
                }
                out
            });
        }
        TicketCmd::Templates => {
            let out = client.call(Method::GET, "/v1/incident-templates", None, None).await?;
            print(args, &out, super::views::templates);
        }
        TicketCmd::Cockpit => {
            let out = client.call(Method::GET, "/v1/ux/dispatcher/cockpit", None, None).await?;
            print(args, &out, super::views::cockpit);
        }
        TicketCmd::Packet { id } => {
            let out = client.call(Method::GET, &format!("/v1/ux/technician/job-packet/{id}"), None, None).await?;
            print(args, &out, super::views::job_packet);
        }
        _ => anyhow::bail!("not a read"),
    }
    Ok(())
}
