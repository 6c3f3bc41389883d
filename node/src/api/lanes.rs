//! Agent lanes over HTTP: creating lanes, checkpoints, requesting a handoff, reads,
//! operator controls and lane freezing, plus the helpers the other lane modules
//! share (`handoffs`, `envelopes`, `insights`, `dlq`).

use super::extract::Path;
use actors::kernel::{Outcome, Request};
use actors::lane::store;
use actors::lane::{HandoffRequest, Lane, LaneCommand, LaneError, TimeoutAction, handoff_due};
use actors::lane::{Lanes, freeze};
use actors::policy::{Principal, Role};
use actors::storage::EventRecord;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::{App, authorize_route, origin};
use crate::dto::lanes as dto;

/// The published schema of the v1 event envelope.
pub const ENVELOPE_SCHEMA: &str = include_str!("../../schemas/event-envelope.v1.json");
pub(super) const MAX_WAIT_SECONDS: u64 = 60;

impl From<LaneError> for ApiError {
    fn from(e: LaneError) -> Self {
        let conflict = |code, m: String| ApiError::new(StatusCode::CONFLICT, code, m);
        match e {
            LaneError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "LANE_NOT_FOUND", "lane not found"),
            LaneError::UnknownHandoff => {
                ApiError::new(StatusCode::NOT_FOUND, "HANDOFF_NOT_FOUND", "no such handoff on this lane")
            }
            e @ LaneError::UnknownCheckpoint(_) => {
                ApiError::new(StatusCode::CONFLICT, "UNKNOWN_CHECKPOINT", e.to_string())
            }
            e @ LaneError::Invalid(_) => ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            e @ LaneError::HandoffOpen => conflict("HANDOFF_ALREADY_OPEN", e.to_string()),
            e @ LaneError::HandoffNotOpen(_) => conflict("HANDOFF_NOT_OPEN", e.to_string()),
            e @ LaneError::Closed => conflict("LANE_CLOSED", e.to_string()),
            e @ LaneError::LimitReached { .. } => conflict("LIMIT_REACHED", e.to_string()),
            e @ LaneError::HandoffIdTaken(_) => conflict("HANDOFF_ID_TAKEN", e.to_string()),
            e @ LaneError::Exists => conflict("LANE_EXISTS", e.to_string()),
            e @ (LaneError::OwnerExists(_) | LaneError::NoOwner | LaneError::NotBlocked) => {
                conflict("INVALID_LANE_STATE", e.to_string())
            }
        }
    }
}

pub(super) fn queue_visible(caller: &Principal, queue: &str) -> bool {
    caller.role == Role::Admin || caller.queues.iter().any(|q| q == "*" || q == queue)
}

pub(super) fn queue_forbidden(queue: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "QUEUE_FORBIDDEN", format!("queue {queue:?} is outside the caller's queues"))
        .policy(actors::policy::PolicyDimension::Scope)
}

/// The lane as its actor holds it: reads never replay the lane's stream.
pub(super) async fn load_lane(app: &App, id: &str) -> Result<Lane, ApiError> {
    app.lanes.get(&id.to_owned()).await?.ok_or_else(|| ApiError::from(LaneError::NotFound))
}

/// Agents see their own lanes; operators the lanes whose handoff is in their queues; admins all.
pub(super) fn may_see(caller: &Principal, lane: &Lane) -> bool {
    match caller.role {
        Role::Admin => true,
        Role::Agent => lane.agent == caller.sub,
        // People see a lane while its latest handoff sits in one of their queues: a
        // handoff rerouted elsewhere takes the lane (its details and controls) with it.
        _ => lane.handoff.as_ref().is_some_and(|h| queue_visible(caller, &h.request.queue)),
    }
}

pub(super) async fn run(app: &App, request: Request<Lanes>) -> Result<Outcome<Lanes>, ApiError> {
    Ok(app.lanes.run(request).await?)
}

pub(super) fn receipt_of(r: &EventRecord) -> EventReceipt {
    EventReceipt {
        event_id: r.event_id.clone(),
        event_type: r.kind.clone(),
        stream: r.stream.clone(),
        seq: r.seq,
        global_position: r.global_position,
        hash: hex::encode(r.hash),
    }
}

/// Where one written event landed in the log.
#[derive(Serialize, ToSchema)]
pub struct EventReceipt {
    pub event_id: String,
    pub event_type: String,
    pub stream: String,
    pub seq: u64,
    pub global_position: u64,
    /// Hex SHA-256 of the event, chained to the one before it in its stream.
    pub hash: String,
}

/// The answer to a lane command: the lane after it and the events it wrote.
#[derive(Serialize, ToSchema)]
pub struct LaneAnswer {
    pub lane: dto::Lane,
    pub events: Vec<EventReceipt>,
    /// On creation: the key of the callbacks' HMAC signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
}

/// The lane and what was written (or replayed), with `Idempotent-Replayed` when replayed.
pub(super) fn answer(status: StatusCode, outcome: Outcome<Lanes>, callback_secret: Option<String>) -> Response {
    let events = outcome.records.iter().map(receipt_of).collect();
    let body = LaneAnswer { lane: dto::Lane::from(outcome.state), events, callback_secret };
    // A replay answers as the first request was answered, marked as a replay.
    let replayed = outcome.replayed;
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    response
}

pub(super) fn frozen(app: &App) -> Result<Option<String>, ApiError> {
    let v =
        app.log.index_get(freeze::SETTINGS, freeze::FROZEN).map_err(|e| ApiError::internal("reading settings", e))?;
    Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

// ---------------------------------------------------------------- lanes

/// Body of `POST /v1/lanes`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLane {
    /// Chosen by the caller, or generated.
    #[schema(schema_with = crate::dto::rules::lane_id)]
    pub lane_id: Option<String>,
    /// The agent the lane belongs to (an agent caller is the agent itself).
    #[schema(schema_with = crate::dto::rules::optional_non_blank)]
    pub agent: Option<String>,
    pub ticket_id: Option<String>,
    /// Where decisions are POSTed, signed with the lane's secret. A host that is (or
    /// resolves to) an internal address is refused (403 `CALLBACK_HOST_FORBIDDEN`)
    /// unless the server allows it with `--callback-allow-host`.
    #[schema(schema_with = crate::dto::rules::callback_url)]
    pub callback_url: Option<String>,
}

/// The lane ids a caller may choose, as a JSON Schema pattern; [`is_lane_id`] checks it.
pub(crate) const LANE_ID_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,128}$";

/// Whether `id` follows [`LANE_ID_PATTERN`].
fn is_lane_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c))
}

#[utoipa::path(operation_id = "lane.open", post, path = "/v1/lanes", tag = "lanes", request_body = CreateLane,
    responses((status = 201, body = LaneAnswer), (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
/// Open a lane. Answers with `callback_secret`, the key of the callbacks' HMAC signature.
/// Refused with 503 `LANES_FROZEN` while an admin has frozen lane creation.
pub(super) async fn create(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<CreateLane>,
) -> Result<Response, ApiError> {
    authorize_route(&caller, &ctx, "lane.open")?;
    let idem = super::idempotency(&caller, &ctx, body.canonical_hash)?;
    if let Some(reason) = frozen(&app)? {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "LANES_FROZEN",
            format!("new lanes are frozen: {reason}"),
        ));
    }
    let b = body.value;
    let id = b.lane_id.unwrap_or_else(|| app.kernel.ids.next_id().to_string());
    if !is_lane_id(&id) {
        return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "lane_id: 1-128 of [A-Za-z0-9-_.:]"));
    }
    if let Some(url) = &b.callback_url {
        if !crate::outbound::is_callback_url(url) {
            return Err(ApiError::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                "callback_url must be http(s)://host[:port][/path] with a host name or an IPv4 address",
            ));
        }
        let checked = app.callbacks.check_resolves(url).await;
        checked.map_err(|why| ApiError::new(StatusCode::FORBIDDEN, "CALLBACK_HOST_FORBIDDEN", why))?;
    }
    let agent =
        if caller.role == Role::Agent { caller.sub.clone() } else { b.agent.unwrap_or_else(|| caller.sub.clone()) };
    let (secret, secret_op) = crate::lanes::new_secret(&id);
    let command = LaneCommand::Create { agent, ticket_id: b.ticket_id, callback_url: b.callback_url };
    let request = Request {
        id: id.clone(),
        command,
        origin: origin(&caller, &ctx, "lane.open"),
        idempotency: Some(idem),
        index_ops: vec![secret_op],
    };
    let outcome = run(&app, request).await?;
    // A replay answers with the secret stored by the first request.
    let secret = match outcome.replayed {
        true => app.log.index_get(store::SECRETS, &id).ok().flatten().map(|s| String::from_utf8_lossy(&s).into_owned()),
        false => Some(secret),
    };
    Ok(answer(StatusCode::CREATED, outcome, secret))
}

pub(super) async fn lane_for(
    app: &App,
    caller: &Principal,
    ctx: &RequestCtx,
    id: &str,
    tool: &str,
) -> Result<Lane, ApiError> {
    authorize_route(caller, ctx, tool)?;
    let lane = load_lane(app, id).await?;
    if !may_see(caller, &lane) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "this lane is not the caller's")
            .policy(actors::policy::PolicyDimension::Scope));
    }
    Ok(lane)
}

#[utoipa::path(operation_id = "lane.get", get, path = "/v1/lanes/{id}", tag = "lanes", params(("id" = String, Path)),
    responses((status = 200, body = dto::Lane), (status = "4XX", body = ErrorBody)))]
/// A lane: status, checkpoints, current and earlier handoffs, owner.
pub(super) async fn get(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<dto::Lane>, ApiError> {
    Ok(Json(lane_for(&app, &caller, &ctx, &id, "lane.get").await?.into()))
}

#[utoipa::path(operation_id = "lane.timeline", get, path = "/v1/lanes/{id}/timeline", tag = "lanes", params(("id" = String, Path)),
    responses((status = 200, body = LaneTimeline), (status = "4XX", body = ErrorBody)))]
/// A lane's audit timeline, hash-linked, oldest first.
pub(super) async fn timeline(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<LaneTimeline>, ApiError> {
    lane_for(&app, &caller, &ctx, &id, "lane.timeline").await?;
    let records =
        app.log.read_stream(&store::stream(&id), 0).map_err(|e| ApiError::internal("reading the timeline", e))?;
    let events: Vec<super::tickets::TimelineEntry> = records.into_iter().map(Into::into).collect();
    Ok(Json(LaneTimeline { lane_id: id, events }))
}

/// A lane's events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct LaneTimeline {
    pub lane_id: String,
    pub events: Vec<super::tickets::TimelineEntry>,
}

/// Body of `POST /v1/lanes/{id}/checkpoints`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCheckpoint {
    #[schema(schema_with = crate::dto::rules::checkpoint_name)]
    pub name: String,
    #[serde(default)]
    pub state: Value,
}

#[utoipa::path(operation_id = "lane.checkpoint", post, path = "/v1/lanes/{id}/checkpoints", tag = "lanes", request_body = NewCheckpoint,
    params(("id" = String, Path)),
    responses((status = 200, body = LaneAnswer), (status = "4XX", body = ErrorBody)))]
/// Record a checkpoint the lane can resume from.
pub(super) async fn checkpoint(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    body: JsonBody<NewCheckpoint>,
) -> Result<Response, ApiError> {
    lane_for(&app, &caller, &ctx, &id, "lane.checkpoint").await?;
    let idem = super::idempotency(&caller, &ctx, body.canonical_hash)?;
    let command =
        LaneCommand::Checkpoint { name: body.value.name, state: body.value.state, now_ms: app.kernel.clock.now_ms() };
    let request = Request {
        id,
        command,
        origin: origin(&caller, &ctx, "lane.checkpoint"),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::OK, run(&app, request).await?, None))
}

/// What a handoff asks (direct route and the `handoff.requested` envelope's `data`).
#[derive(Deserialize, ToSchema)]
pub struct RequestHandoff {
    pub checkpoint: String,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub trigger_class: String,
    pub reason: String,
    #[serde(default)]
    pub context: Value,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub queue: String,
    /// First response due within (default 300 s).
    #[schema(schema_with = crate::dto::rules::sla_seconds)]
    pub sla_seconds: Option<u64>,
    /// Decision due within (default 3600 s).
    #[schema(schema_with = crate::dto::rules::deadline_seconds)]
    pub deadline_seconds: Option<u64>,
    /// `reject` (default) or `escalate`.
    pub timeout_action: Option<dto::TimeoutAction>,
}

impl RequestHandoff {
    pub(super) fn into_command(self, handoff_id: String, now: i64) -> Result<LaneCommand, ApiError> {
        let (sla_due_ms, deadline_ms) = handoff_due(now, self.sla_seconds, self.deadline_seconds)?;
        Ok(LaneCommand::RequestHandoff {
            request: HandoffRequest {
                handoff_id,
                checkpoint: self.checkpoint,
                trigger_class: self.trigger_class,
                reason: self.reason,
                context: self.context,
                queue: self.queue,
                sla_due_ms,
                deadline_ms,
                timeout_action: self.timeout_action.map_or(TimeoutAction::Reject, Into::into),
            },
        })
    }
}

#[utoipa::path(operation_id = "handoff.request", post, path = "/v1/lanes/{id}/handoffs", tag = "lanes", request_body = RequestHandoff,
    params(("id" = String, Path)),
    responses((status = 201, body = LaneAnswer), (status = "4XX", body = ErrorBody)))]
/// Pause the lane for a human decision at a recorded checkpoint.
pub(super) async fn request_handoff(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    body: JsonBody<RequestHandoff>,
) -> Result<Response, ApiError> {
    lane_for(&app, &caller, &ctx, &id, "handoff.request").await?;
    let idem = super::idempotency(&caller, &ctx, body.canonical_hash)?;
    let command = body.value.into_command(app.kernel.ids.next_id().to_string(), app.kernel.clock.now_ms())?;
    let request = Request {
        id,
        command,
        origin: origin(&caller, &ctx, "handoff.request"),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::CREATED, run(&app, request).await?, None))
}

// ---------------------------------------------------------------- operator controls

/// Body of escalate and unblock: why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
}

/// Body of assign-owner and reassign-owner.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerControl {
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub owner: String,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
}

/// Body of override-close: the reason starts with `human_override:` and says why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideClose {
    #[schema(schema_with = crate::dto::rules::human_override)]
    pub reason: String,
}

/// Runs an operator control on a lane the caller may see.
async fn control(
    app: &App,
    caller: &Principal,
    ctx: &RequestCtx,
    id: &str,
    tool: &str,
    (command, body_hash): (LaneCommand, [u8; 32]),
) -> Result<Response, ApiError> {
    // Only a lane the caller may see: for people, its latest handoff is in their queues.
    lane_for(app, caller, ctx, id, tool).await?;
    let idem = super::idempotency(caller, ctx, body_hash)?;
    let request = Request {
        id: id.to_owned(),
        command,
        origin: origin(caller, ctx, tool),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::OK, run(app, request).await?, None))
}

macro_rules! lane_control {
    ($name:ident, $path:literal, $tool:literal, $body:ty, $command:expr, $doc:literal) => {
        #[utoipa::path(operation_id = $tool, post, path = $path, tag = "lanes", request_body = $body,
                                    params(("id" = String, Path)),
                                    responses((status = 200, body = LaneAnswer), (status = "4XX", body = ErrorBody)))]
        #[doc = $doc]
        pub(super) async fn $name(
            State(app): State<App>,
            Caller(caller): Caller,
            ctx: RequestCtx,
            Path(id): Path<String>,
            body: JsonBody<$body>,
        ) -> Result<Response, ApiError> {
            let to_command: fn($body, String) -> LaneCommand = $command;
            let command = to_command(body.value, caller.sub.clone());
            control(&app, &caller, &ctx, &id, $tool, (command, body.canonical_hash)).await
        }
    };
}

lane_control!(
    escalate,
    "/v1/lanes/{id}/escalate",
    "lane.escalate",
    Control,
    |b, by| LaneCommand::Escalate { by, reason: b.reason },
    "Escalate the lane (blocks it; audit event with the reason)."
);
lane_control!(
    assign_owner,
    "/v1/lanes/{id}/assign-owner",
    "lane.assign_owner",
    OwnerControl,
    |b, by| LaneCommand::AssignOwner { owner: b.owner, by, reason: b.reason, reassign: false },
    "Give the lane an escalation owner."
);
lane_control!(
    reassign_owner,
    "/v1/lanes/{id}/reassign-owner",
    "lane.reassign_owner",
    OwnerControl,
    |b, by| LaneCommand::AssignOwner { owner: b.owner, by, reason: b.reason, reassign: true },
    "Hand the escalation to another owner."
);
lane_control!(
    unblock,
    "/v1/lanes/{id}/unblock",
    "lane.unblock",
    Control,
    |b, by| LaneCommand::Unblock { by, reason: b.reason },
    "Unblock an escalated lane."
);
lane_control!(
    override_close,
    "/v1/lanes/{id}/override-close",
    "lane.override_close",
    OverrideClose,
    |b, by| LaneCommand::OverrideClose { by, reason: b.reason },
    "Close the lane by hand; the reason must start with `human_override:`."
);

#[utoipa::path(operation_id = "lane.owner", get, path = "/v1/lanes/{id}/owner", tag = "lanes", params(("id" = String, Path)),
    responses((status = 200, body = LaneOwner), (status = "4XX", body = ErrorBody)))]
/// The lane's escalation owner.
pub(super) async fn owner(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<LaneOwner>, ApiError> {
    let lane = lane_for(&app, &caller, &ctx, &id, "lane.owner").await?;
    Ok(Json(LaneOwner { lane_id: lane.id, owner: lane.owner, status: lane.status.into() }))
}

/// A lane's escalation owner (null: none yet).
#[derive(Serialize, ToSchema)]
pub struct LaneOwner {
    pub lane_id: String,
    pub owner: Option<String>,
    pub status: dto::LaneStatus,
}

/// Whether new lanes are refused, and why.
#[derive(Serialize, ToSchema)]
pub struct FreezeState {
    pub frozen: bool,
    pub reason: String,
}

/// Body of freeze and unfreeze.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
}

async fn set_frozen(
    app: &App,
    caller: &Principal,
    ctx: &RequestCtx,
    tool: &str,
    reason: String,
    freeze: bool,
) -> Result<Json<FreezeState>, ApiError> {
    authorize_route(caller, ctx, tool)?;
    let command = freeze::SetFreeze { frozen: freeze, reason: reason.clone() };
    let request = Request::<freeze::LaneFreeze>::new("lanes".into(), command, origin(caller, ctx, tool));
    actors::kernel::run_once(&app.kernel, &(), &request).await?;
    tracing::info!(by = %caller.sub, freeze, %reason, "lane creation freeze changed");
    Ok(Json(FreezeState { frozen: freeze, reason }))
}

#[utoipa::path(operation_id = "admin.lanes.freeze", post, path = "/v1/admin/lanes/freeze", tag = "admin", request_body = Reason,
    responses((status = 200, body = FreezeState), (status = "4XX", body = ErrorBody)))]
/// Refuse new lanes (503 `LANES_FROZEN`); reads, decisions and existing lanes keep working.
pub(super) async fn freeze(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<Reason>,
) -> Result<Json<FreezeState>, ApiError> {
    set_frozen(&app, &caller, &ctx, "admin.lanes.freeze", body.value.reason, true).await
}

#[utoipa::path(operation_id = "admin.lanes.unfreeze", post, path = "/v1/admin/lanes/unfreeze", tag = "admin", request_body = Reason,
    responses((status = 200, body = FreezeState), (status = "4XX", body = ErrorBody)))]
/// Accept new lanes again.
pub(super) async fn unfreeze(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<Reason>,
) -> Result<Json<FreezeState>, ApiError> {
    set_frozen(&app, &caller, &ctx, "admin.lanes.unfreeze", body.value.reason, false).await
}
