//! Ticket commands and reads.

use super::extract::{Path, Query};
use actors::policy::Principal;
use actors::ticket::{self, TicketCommand, store};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::{App, authorize_route, rfc3339};
use crate::dto::ticket_commands::{
    AddEvidence, Cancel, Complete, ConfirmSchedule, CreateTicket, DecideApproval, DispatchAssignment, Empty,
    GenerateInvoice, ProposeSchedule, RequestChange, Triage, Verify,
};
use crate::dto::tickets::{Evidence, Templates, Ticket};
use actors::kernel::Request;

/// Parses a path segment as a ticket id.
/// Parses a ticket id in the one form the API writes and documents (`format: uuid`):
/// 36 characters, hyphenated.
pub(super) fn parse_ticket_id(raw: &str) -> Result<Uuid, ApiError> {
    Some(raw)
        .filter(|r| r.len() == 36)
        .and_then(|r| Uuid::parse_str(r).ok())
        .ok_or_else(|| ApiError::invalid_ticket_id(raw))
}

/// Sends a command to its ticket's actor and answers with the durable outcome.
async fn run(
    app: &App,
    caller: Principal,
    ctx: RequestCtx,
    id: Uuid,
    command: TicketCommand,
    body_hash: [u8; 32],
) -> Result<Response, ApiError> {
    authorize_route(&caller, &ctx, command.tool())?;
    let idempotency = super::idempotency(&caller, &ctx, body_hash)?;
    let origin = super::origin(&caller, &ctx, command.tool());
    let request = Request { idempotency: Some(idempotency), ..Request::new(id, command, origin) };
    let outcome = app.tickets.run(request).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    // Serialized in one piece (axum's `Json` writes through a growing buffer).
    let body =
        serde_json::to_vec(&Ticket::from(outcome.state)).map_err(|e| ApiError::internal("encoding the ticket", e))?;
    let mut response = (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
    if outcome.replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Loads a ticket the caller may read with `tool`.
pub(super) fn load_for(
    app: &App,
    caller: &Principal,
    ctx: &RequestCtx,
    raw_id: &str,
    tool: &str,
) -> Result<ticket::Ticket, ApiError> {
    let spec = authorize_route(caller, ctx, tool)?;
    let id = parse_ticket_id(raw_id)?;
    let ticket = store::load(&app.log, id)
        .map_err(|e| ApiError::internal("loading the ticket", e))?
        .ok_or_else(ApiError::ticket_not_found)?;
    actors::policy::authorize(caller, spec, Some(&ticket)).map_err(|d| ApiError::from(ticket::TicketError::from(d)))?;
    Ok(ticket)
}

#[utoipa::path(operation_id = "ticket.create", post, path = "/v1/tickets", tag = "tickets", request_body = CreateTicket,
    responses((status = 201, description = "created", body = Ticket), (status = "4XX", description = "refused", body = ErrorBody)))]
/// Open a work order.
pub(super) async fn create(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<CreateTicket>,
) -> Result<Response, ApiError> {
    let id = app.kernel.ids.next_id();
    run(&app, caller, ctx, id, TicketCommand::Create(body.value.into()), body.canonical_hash).await
}

macro_rules! ticket_command {
    ($(#[$doc:meta])* $name:ident, $tool:literal, $path:literal, $body:ty, $variant:ident) => {
        #[utoipa::path(operation_id = $tool, post, path = $path, tag = "tickets", request_body = $body,
            params(("id" = Uuid, Path, description = "ticket id")),
            responses((status = 200, description = "the ticket after the command", body = Ticket),
                      (status = "4XX", description = "refused; nothing was written", body = ErrorBody)))]
        $(#[$doc])*
        pub(super) async fn $name(
            State(app): State<App>,
            Caller(caller): Caller,
            ctx: RequestCtx,
            Path(id): Path<String>,
            body: JsonBody<$body>,
        ) -> Result<Response, ApiError> {
            let id = parse_ticket_id(&id)?;
            run(&app, caller, ctx, id, TicketCommand::$variant(body.value.into()), body.canonical_hash).await
        }
    };
}

ticket_command!(/// Triage a NEW ticket.
    triage, "ticket.triage", "/v1/tickets/{id}/triage", Triage, Triage);
ticket_command!(/// Propose service windows.
    propose_schedule, "schedule.propose", "/v1/tickets/{id}/schedule/propose", ProposeSchedule, ProposeSchedule);
ticket_command!(/// Confirm one proposed window.
    confirm_schedule, "schedule.confirm", "/v1/tickets/{id}/schedule/confirm", ConfirmSchedule, ConfirmSchedule);
#[utoipa::path(operation_id = "assignment.dispatch", post, path = "/v1/tickets/{id}/assignment/dispatch", tag = "tickets", request_body = DispatchAssignment,
    params(("id" = Uuid, Path, description = "ticket id")),
    responses((status = 200, description = "the ticket after the command", body = Ticket),
              (status = "4XX", description = "refused; nothing was written", body = ErrorBody)))]
/// Dispatch a technician; from TRIAGED only as an emergency bypass with a reason and a
/// manager's confirmation — the `confirmation` a different person, a manager, got from
/// `POST /v1/tickets/{id}/assignment/bypass-confirmation`. The timeline records both.
pub(super) async fn dispatch(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    body: JsonBody<DispatchAssignment>,
) -> Result<Response, ApiError> {
    let id = parse_ticket_id(&id)?;
    let mut command: ticket::DispatchAssignment = body.value.into();
    if command.dispatch_mode == Some(ticket::DispatchMode::EmergencyBypass)
        && let Some(token) = command.manager_confirmation.as_deref().filter(|t| !t.is_empty())
    {
        let refused = |why: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", format!("manager_confirmation: {why}"))
                .details(serde_json::json!({ "field": "manager_confirmation" }))
        };
        let confirmed = app.auth.verify_bypass(token, &id.to_string()).map_err(|e| {
            refused(format!("not a valid confirmation from POST /v1/tickets/{id}/assignment/bypass-confirmation ({e})"))
        })?;
        if confirmed.sub == caller.sub {
            return Err(refused("the confirming manager must be another person than the dispatcher".into()));
        }
        command.manager_confirmation = Some(confirmed.sub);
    }
    run(&app, caller, ctx, id, TicketCommand::Dispatch(command), body.canonical_hash).await
}

/// Body of `POST /v1/tickets/{id}/assignment/bypass-confirmation`.
#[derive(Deserialize, ToSchema)]
pub struct BypassRequest {
    /// Why the emergency justifies skipping scheduling.
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
}

/// A manager's confirmation of one emergency bypass.
#[derive(Serialize, ToSchema)]
pub struct BypassConfirmation {
    /// Hand to the dispatcher; it goes in `manager_confirmation`.
    pub confirmation: String,
    pub manager: String,
    pub expires_at: i64,
}

#[utoipa::path(operation_id = "assignment.confirm_bypass", post, path = "/v1/tickets/{id}/assignment/bypass-confirmation", tag = "tickets", request_body = BypassRequest,
    params(("id" = Uuid, Path, description = "ticket id")),
    responses((status = 201, body = BypassConfirmation), (status = "4XX", body = ErrorBody)))]
/// A manager confirms an emergency bypass of this ticket: a signed confirmation valid
/// for ten minutes, for this ticket only, that another person (the dispatcher) uses.
pub(super) async fn confirm_bypass(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    body: JsonBody<BypassRequest>,
) -> Result<(StatusCode, Json<BypassConfirmation>), ApiError> {
    let ticket = load_for(&app, &caller, &ctx, &id, "assignment.confirm_bypass")?;
    if body.value.reason.trim().is_empty() {
        return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "reason must not be empty"));
    }
    let (confirmation, claims) = app
        .auth
        .sign_bypass(&caller, &ticket.id.to_string(), &body.value.reason)
        .map_err(|e| ApiError::internal("signing a confirmation", e))?;
    tracing::info!(ticket = %ticket.id, manager = %caller.sub, "emergency bypass confirmed");
    Ok((StatusCode::CREATED, Json(BypassConfirmation { confirmation, manager: claims.sub, expires_at: claims.exp })))
}
ticket_command!(/// The assigned technician checks in on site.
    check_in, "tech.check_in", "/v1/tickets/{id}/tech/check-in", Empty, CheckIn);
ticket_command!(/// The assigned technician asks for approval of a change.
    request_change, "tech.request_change", "/v1/tickets/{id}/tech/request-change", RequestChange, RequestChange);
ticket_command!(/// A manager approves or denies.
    decide_approval, "approval.decide", "/v1/tickets/{id}/approval/decide", DecideApproval, DecideApproval);
ticket_command!(/// Attach evidence (a `blob:sha256:` URI from `POST /v1/blobs`).
    add_evidence, "closeout.add_evidence", "/v1/tickets/{id}/evidence", AddEvidence, AddEvidence);
ticket_command!(/// Complete the work; refused until closeout is ready.
    complete, "tech.complete", "/v1/tickets/{id}/tech/complete", Complete, Complete);
ticket_command!(/// Verify completed work; closeout is checked again.
    verify, "qa.verify", "/v1/tickets/{id}/qa/verify", Verify, Verify);
ticket_command!(/// Invoice verified work.
    generate_invoice, "billing.generate_invoice", "/v1/tickets/{id}/billing/generate-invoice", GenerateInvoice, GenerateInvoice);
ticket_command!(/// Close an invoiced ticket.
    close, "ticket.close", "/v1/tickets/{id}/close", Empty, Close);
ticket_command!(/// Cancel an open ticket (reason required).
    cancel, "ticket.cancel", "/v1/tickets/{id}/cancel", Cancel, Cancel);

#[utoipa::path(operation_id = "ticket.get", get, path = "/v1/tickets/{id}", tag = "tickets", params(("id" = Uuid, Path, description = "ticket id")),
    responses((status = 200, body = Ticket), (status = "4XX", body = ErrorBody)))]
/// Read a ticket.
pub(super) async fn get(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<Ticket>, ApiError> {
    load_for(&app, &caller, &ctx, &id, "ticket.get").map(|t| Json(t.into()))
}

/// One event of a ticket's audit trail.
#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    /// `ticket/<id>`, or `task/<id>` for a task linked to the ticket.
    pub stream: String,
    pub seq: u64,
    pub global_position: u64,
    pub event_id: String,
    pub occurred_at: String,
    pub kind: String,
    pub actor: TimelineActor,
    pub tool: String,
    pub request_id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct TimelineActor {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct Timeline {
    pub ticket_id: Uuid,
    pub events: Vec<TimelineEntry>,
}

/// The timeline of a ticket, in log order.
/// A ticket's own events and those of the tasks linked to it, in log order.
/// A ticket's events and its linked tasks' events, in log order. A caller who may not
/// read task results sees a task's state changes only: no spec, env or output.
pub(super) fn timeline_of(app: &App, caller: &Principal, id: Uuid) -> Result<Vec<TimelineEntry>, ApiError> {
    let failed = |e: &dyn std::fmt::Display| ApiError::internal("reading the timeline", e);
    let mut records = app.log.read_stream(&store::stream(id), 0).map_err(|e| failed(&e))?;
    let mut task_records = Vec::new();
    for task in actors::task::store::for_ticket(&app.log, &id.to_string()).map_err(|e| failed(&e))? {
        task_records.extend(app.log.read_stream(&actors::task::store::stream(&task), 0).map_err(|e| failed(&e))?);
    }
    if !sees_task_contents(caller) {
        task_records.iter_mut().for_each(|r| r.payload = b"null".to_vec());
    }
    records.extend(task_records);
    records.sort_by_key(|r| r.global_position);
    Ok(records.into_iter().map(TimelineEntry::from).collect())
}

/// Whether `caller` may see what a task ran and printed (else only its state changes).
pub(super) fn sees_task_contents(caller: &Principal) -> bool {
    actors::policy::tool("task.result").is_some_and(|t| t.roles.contains(&caller.role))
}

impl From<actors::storage::EventRecord> for TimelineEntry {
    /// A stored event as every timeline shows it (tickets, tasks, lanes).
    fn from(r: actors::storage::EventRecord) -> Self {
        TimelineEntry {
            stream: r.stream,
            seq: r.seq,
            global_position: r.global_position,
            occurred_at: rfc3339(store::time_of(r.time_ms)),
            event_id: r.event_id,
            kind: r.kind,
            actor: TimelineActor { kind: r.actor.kind, id: r.actor.id, role: r.actor.role },
            tool: r.tool,
            request_id: r.request_id,
            correlation_id: r.correlation_id,
            trace_id: r.trace_id,
            before_state: r.from_state,
            after_state: r.to_state,
            payload: serde_json::from_slice(&r.payload).unwrap_or(serde_json::Value::Null),
            prev_hash: hex::encode(r.prev_hash),
            hash: hex::encode(r.hash),
        }
    }
}

#[utoipa::path(operation_id = "ticket.timeline", get, path = "/v1/tickets/{id}/timeline", tag = "tickets", params(("id" = Uuid, Path, description = "ticket id")),
    responses((status = 200, body = Timeline), (status = "4XX", body = ErrorBody)))]
/// A ticket's audit timeline, oldest first, with each event's hash-chain link.
pub(super) async fn timeline(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<Timeline>, ApiError> {
    let ticket = load_for(&app, &caller, &ctx, &id, "ticket.timeline")?;
    Ok(Json(Timeline { ticket_id: ticket.id, events: timeline_of(&app, &caller, ticket.id)? }))
}

#[derive(Serialize, ToSchema)]
pub struct EvidenceList {
    pub ticket_id: Uuid,
    pub evidence: Vec<Evidence>,
}

#[utoipa::path(operation_id = "ticket.evidence", get, path = "/v1/tickets/{id}/evidence", tag = "tickets", params(("id" = Uuid, Path, description = "ticket id")),
    responses((status = 200, body = EvidenceList), (status = "4XX", body = ErrorBody)))]
/// A ticket's evidence, in the order it was added.
pub(super) async fn evidence(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<EvidenceList>, ApiError> {
    let ticket = load_for(&app, &caller, &ctx, &id, "ticket.evidence")?;
    let evidence = ticket.evidence.into_iter().map(Evidence::from).collect();
    Ok(Json(EvidenceList { ticket_id: ticket.id, evidence }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tickets in this state.
    pub state: Option<crate::dto::tickets::TicketState>,
    pub site_id: Option<String>,
    #[serde(default, deserialize_with = "super::paging::limit")]
    #[param(schema_with = super::paging::limit_schema)]
    pub limit: Option<usize>,
    /// The `next_after` of the previous page.
    pub after: Option<Uuid>,
}

/// A page of tickets.
#[derive(Serialize, ToSchema)]
pub struct TicketList {
    pub tickets: Vec<Ticket>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<Uuid>,
}

#[utoipa::path(operation_id = "ticket.list", get, path = "/v1/tickets", tag = "tickets", params(ListQuery),
    responses((status = 200, body = TicketList), (status = "4XX", body = ErrorBody)))]
/// Tickets in the caller's scope, by state and/or site, oldest first.
pub(super) async fn list(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Query(q): Query<ListQuery>,
) -> Result<Json<TicketList>, ApiError> {
    authorize_route(&caller, &ctx, "ticket.list")?;
    let filter = store::ListFilter {
        state: q.state.map(Into::into),
        site_id: q.site_id.as_deref().filter(|s| !s.is_empty()),
        after: q.after,
        limit: q.limit.unwrap_or(super::paging::DEFAULT_LIMIT),
    };
    let (tickets, next_after) = store::list(&app.log, &filter, |t| caller.in_scope(&t.account_id, &t.site_id))
        .map_err(|e| ApiError::internal("listing tickets", e))?;
    Ok(Json(TicketList { tickets: tickets.into_iter().map(Ticket::from).collect(), next_after }))
}

#[utoipa::path(operation_id = "incident_templates.list", get, path = "/v1/incident-templates", tag = "tickets",
    responses((status = 200, body = Templates), (status = "4XX", body = ErrorBody)))]
/// The closeout templates in force: required evidence keys and checklist per incident type.
pub(super) async fn incident_templates(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    authorize_route(&caller, &ctx, "incident_templates.list")?;
    Ok(Json(Templates::from(app.templates.as_ref().clone())).into_response())
}
