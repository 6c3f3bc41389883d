//! Read models for people: the dispatcher cockpit and the technician job packet.
//! Both list the actions the caller may take, and why the others are disabled,
//! from the same policy table the API enforces.

use super::extract::Path;
use actors::policy::ticket_actions;
use actors::ticket::sla;
use actors::ticket::{Ticket, TicketState, closeout, store};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, RequestCtx};
use super::tickets::{TimelineEntry, load_for, timeline_of};
use super::{App, authorize_route, rfc3339};
use crate::dto::accounts::DisabledReason;
use crate::dto::tickets::{CloseoutStatus, Evidence, Priority, SlaStatus, Window};

#[derive(Serialize, ToSchema)]
pub struct Sla {
    pub due_at: String,
    pub remaining_seconds: i64,
    pub status: SlaStatus,
}

fn sla(t: &Ticket, now: OffsetDateTime) -> Sla {
    let (due, remaining, status) = sla::standing(t, now);
    Sla { due_at: rfc3339(due), remaining_seconds: remaining.whole_seconds(), status: status.into() }
}

/// What identifies a ticket at a glance, shared by the read models.
#[derive(Serialize, ToSchema)]
pub struct TicketHeader {
    pub ticket_id: Uuid,
    pub state: crate::dto::tickets::TicketState,
    pub priority: Priority,
    pub account_id: String,
    pub site_id: String,
    pub incident_type: String,
    pub summary: String,
}

impl TicketHeader {
    fn of(t: &Ticket) -> Self {
        TicketHeader {
            ticket_id: t.id,
            state: t.state.into(),
            priority: t.priority.into(),
            account_id: t.account_id.clone(),
            site_id: t.site_id.clone(),
            incident_type: t.incident_type.clone(),
            summary: t.summary.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CockpitRow {
    #[serde(flatten)]
    pub ticket: TicketHeader,
    pub assignee: Option<String>,
    pub last_update: String,
    pub sla: Sla,
    pub actions: Vec<Action>,
}

/// An action on the ticket: its tool and route, and whether the caller may take it
/// now (and if not, the rule that says no).
#[derive(Serialize, ToSchema)]
pub struct Action {
    pub tool: &'static str,
    pub method: &'static str,
    /// The route with the ticket id filled in.
    pub path: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<DisabledReason>,
}

/// The policy's verdicts joined with the route table.
fn actions(caller: &actors::policy::Principal, t: &Ticket) -> Vec<Action> {
    ticket_actions(caller, t)
        .into_iter()
        .map(|a| {
            let (method, path) = super::openapi::route_of(a.tool).unwrap_or(("", ""));
            Action {
                tool: a.tool,
                method,
                path: path.replace("{id}", &t.id.to_string()),
                enabled: a.enabled,
                disabled_reason: a.disabled_reason.map(Into::into),
            }
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub struct Cockpit {
    pub generated_at: String,
    /// Open tickets in the caller's scope, most urgent SLA first.
    pub queue: Vec<CockpitRow>,
}

/// States the cockpit watches: open and not yet through verification.
const QUEUE_STATES: [TicketState; 9] = [
    TicketState::New,
    TicketState::Triaged,
    TicketState::ReadyToSchedule,
    TicketState::ScheduleProposed,
    TicketState::Scheduled,
    TicketState::Dispatched,
    TicketState::InProgress,
    TicketState::ApprovalRequired,
    TicketState::CompletedPendingVerification,
];

#[utoipa::path(operation_id = "dispatcher.cockpit", get, path = "/v1/ux/dispatcher/cockpit", tag = "ux",
    responses((status = 200, body = Cockpit), (status = "4XX", body = ErrorBody)))]
/// The dispatcher's queue with SLA timers and the actions the caller may take.
pub(super) async fn cockpit(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
) -> Result<Json<Cockpit>, ApiError> {
    authorize_route(&caller, &ctx, "dispatcher.cockpit")?;
    let now = OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    for state in QUEUE_STATES {
        let filter = store::ListFilter { state: Some(state), limit: usize::MAX, ..Default::default() };
        let (tickets, _) = store::list(&app.log, &filter, |t| caller.in_scope(&t.account_id, &t.site_id))
            .map_err(|e| ApiError::internal("reading the queue", e))?;
        for t in tickets {
            rows.push(CockpitRow {
                ticket: TicketHeader::of(&t),
                sla: sla(&t, now),
                actions: actions(&caller, &t),
                last_update: rfc3339(t.updated_at),
                assignee: t.technician_id,
            });
        }
    }
    rows.sort_by_key(|r| (r.sla.remaining_seconds, r.ticket.ticket_id));
    Ok(Json(Cockpit { generated_at: rfc3339(now), queue: rows }))
}

#[derive(Serialize, ToSchema)]
pub struct ChecklistItem {
    pub item: String,
    pub done: bool,
}

#[derive(Serialize, ToSchema)]
pub struct JobPacket {
    #[serde(flatten)]
    pub ticket: TicketHeader,
    /// What the work is: the ticket summary and the incident type's description.
    pub scope: String,
    pub window: Option<Window>,
    pub assignee: Option<String>,
    pub checklist: Vec<ChecklistItem>,
    /// The closeout gate: required vs present evidence, missing items, signature.
    pub closeout: CloseoutStatus,
    pub evidence: Vec<Evidence>,
    pub timeline: Vec<TimelineEntry>,
    pub actions: Vec<Action>,
}

#[utoipa::path(operation_id = "tech.job_packet", get, path = "/v1/ux/technician/job-packet/{id}", tag = "ux", params(("id" = uuid::Uuid, Path, description = "ticket id")),
    responses((status = 200, body = JobPacket), (status = "4XX", body = ErrorBody)))]
/// Everything a technician needs on site, including what still blocks closeout.
pub(super) async fn job_packet(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<JobPacket>, ApiError> {
    let t = load_for(&app, &caller, &ctx, &id, "tech.job_packet")?;
    let template = app.templates.get(&t.incident_type);
    let blobs = app.blobs.clone();
    let resolves = move |uri: &str| blobs.resolves(uri);
    let status = closeout::status(&t, &t.checklist, t.no_signature_reason.as_deref(), &app.templates, &resolves);
    let checklist = template
        .map(|tpl| {
            tpl.checklist
                .iter()
                .map(|i| ChecklistItem { item: i.clone(), done: t.checklist.get(i) == Some(&true) })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(JobPacket {
        ticket: TicketHeader::of(&t),
        scope: match template {
            Some(tpl) => format!("{} — {}", t.summary, tpl.description),
            None => t.summary.clone(),
        },
        window: t.confirmed_window.clone().map(Into::into),
        assignee: t.technician_id.clone(),
        checklist,
        closeout: status.into(),
        timeline: timeline_of(&app, &caller, t.id)?,
        actions: actions(&caller, &t),
        evidence: t.evidence.into_iter().map(Evidence::from).collect(),
    }))
}
