//! Agent lanes and human handoffs over HTTP: the v1 event envelope intake, direct
//! lane routes, the operator queue and decisions, the agent's long-poll, operator
//! controls, lane freezing, the dead-letter queue and the engineering view.

use std::collections::BTreeMap;
use std::time::Duration;

use actors::lane::actor::{LaneFailure, LaneOutcome, LaneRequest};
use actors::lane::store;
use actors::lane::{
    DecisionAction, Handoff, HandoffRequest, HandoffStatus, Lane, LaneCommand, LaneError, TimeoutAction,
};
use actors::node::Origin;
use actors::policy::{Principal, Role};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storage::{Append, EventRecord, IndexOp};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::{App, authorize_route, origin};

/// The published schema of the v1 event envelope.
pub const ENVELOPE_SCHEMA: &str = include_str!("../../schemas/event-envelope.v1.json");
const SETTINGS: &str = "settings";
const FROZEN: &str = "lanes_frozen";
const MAX_WAIT_SECONDS: u64 = 60;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl From<LaneFailure> for ApiError {
    fn from(e: LaneFailure) -> Self {
        let conflict = |code, m: String| ApiError::new(StatusCode::CONFLICT, code, m);
        match e {
            LaneFailure::Rejected(LaneError::NotFound) => {
                ApiError::new(StatusCode::NOT_FOUND, "LANE_NOT_FOUND", "lane not found")
            }
            LaneFailure::Rejected(LaneError::UnknownHandoff) => {
                ApiError::new(StatusCode::NOT_FOUND, "HANDOFF_NOT_FOUND", "no such handoff on this lane")
            }
            LaneFailure::Rejected(e @ LaneError::UnknownCheckpoint(_)) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_CHECKPOINT", e.to_string())
            }
            LaneFailure::Rejected(e @ LaneError::Invalid(_)) => {
                ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            LaneFailure::Rejected(e @ LaneError::HandoffOpen) => conflict("HANDOFF_ALREADY_OPEN", e.to_string()),
            LaneFailure::Rejected(e @ LaneError::HandoffNotOpen(_)) => conflict("HANDOFF_NOT_OPEN", e.to_string()),
            LaneFailure::Rejected(e @ LaneError::Closed) => conflict("LANE_CLOSED", e.to_string()),
            LaneFailure::Rejected(e @ LaneError::LimitReached { .. }) => conflict("LIMIT_REACHED", e.to_string()),
            LaneFailure::Rejected(e @ LaneError::HandoffIdTaken(_)) => conflict("HANDOFF_ID_TAKEN", e.to_string()),
            LaneFailure::Rejected(e @ LaneError::Exists) => conflict("LANE_EXISTS", e.to_string()),
            LaneFailure::Rejected(e @ (LaneError::OwnerExists(_) | LaneError::NoOwner | LaneError::NotBlocked)) => {
                conflict("INVALID_LANE_STATE", e.to_string())
            }
            LaneFailure::KeyReused => {
                conflict("IDEMPOTENCY_KEY_REUSED", "this key was used for a different request".into())
            }
            LaneFailure::Unavailable(m) => ApiError::unavailable(m),
        }
    }
}

pub(super) fn queue_visible(caller: &Principal, queue: &str) -> bool {
    caller.role == Role::Admin || caller.queues.iter().any(|q| q == "*" || q == queue)
}

fn queue_forbidden(queue: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "QUEUE_FORBIDDEN", format!("queue {queue:?} is outside the caller's queues"))
        .policy(actors::policy::PolicyDimension::Scope)
}

/// The lane as its actor holds it: reads never replay the lane's stream.
pub(super) async fn load_lane(app: &App, id: &str) -> Result<Lane, ApiError> {
    app.lanes.get(id).await?.ok_or_else(|| ApiError::from(LaneFailure::Rejected(LaneError::NotFound)))
}

/// Agents see their own lanes; operators the lanes whose handoff is in their queues; admins all.
fn may_see(caller: &Principal, lane: &Lane) -> bool {
    match caller.role {
        Role::Admin => true,
        Role::Agent => lane.agent == caller.sub,
        // People see a lane while its latest handoff sits in one of their queues: a
        // handoff rerouted elsewhere takes the lane (its details and controls) with it.
        _ => lane.handoff.as_ref().or(lane.history.last()).is_some_and(|h| queue_visible(caller, &h.request.queue)),
    }
}

async fn run(app: &App, request: LaneRequest) -> Result<LaneOutcome, ApiError> {
    Ok(app.lanes.run(request).await?)
}

fn receipt_of(r: &EventRecord) -> Value {
    json!({ "event_id": r.event_id, "event_type": r.kind, "stream": r.stream, "seq": r.seq,
            "global_position": r.global_position, "hash": hex::encode(r.hash) })
}

/// The lane and what was written (or replayed), with `Idempotent-Replayed` when replayed.
fn answer(status: StatusCode, outcome: LaneOutcome, extra: Value) -> Response {
    let written: Vec<Value> = outcome.records.iter().chain(outcome.replayed.as_ref()).map(receipt_of).collect();
    let mut body = json!({ "lane": outcome.lane, "events": written });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let replayed = outcome.replayed.is_some();
    let mut response = (if replayed { StatusCode::OK } else { status }, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    response
}

fn frozen(app: &App) -> Result<Option<String>, ApiError> {
    let v = app.log.index_get(SETTINGS, FROZEN).map_err(|e| ApiError::internal("reading settings", e))?;
    Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

// ---------------------------------------------------------------- lanes

/// Body of `POST /v1/lanes`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLane {
    /// Chosen by the caller, or generated.
    pub lane_id: Option<String>,
    /// The agent the lane belongs to (an agent caller is the agent itself).
    pub agent: Option<String>,
    pub ticket_id: Option<String>,
    /// Where decisions are POSTed, signed with the lane's secret.
    pub callback_url: Option<String>,
}

#[utoipa::path(post, path = "/v1/lanes", tag = "lanes", request_body = CreateLane,
    params(("Idempotency-Key" = String, Header, description = "required")),
    responses((status = 201, body = Object), (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
/// Open a lane. Answers with `callback_secret`, the key of the callbacks' HMAC signature.
/// Refused with 503 `LANES_FROZEN` while an admin has frozen lane creation.
pub(super) async fn create(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<CreateLane>,
) -> Result<Response, ApiError> {
    authorize_route(&caller, &ctx, "lane.create")?;
    let idem = super::idempotency(&caller, &ctx, body.canonical_hash)?;
    if let Some(reason) = frozen(&app)? {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "LANES_FROZEN",
            format!("new lanes are frozen: {reason}"),
        ));
    }
    let b = body.value;
    let id = b.lane_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c)) {
        return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "lane_id: 1-128 of [A-Za-z0-9-_.:]"));
    }
    if let Some(url) = &b.callback_url {
        let checked = app.callbacks.check_resolves(url).await;
        checked.map_err(|why| ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, why))?;
    }
    let agent =
        if caller.role == Role::Agent { caller.sub.clone() } else { b.agent.unwrap_or_else(|| caller.sub.clone()) };
    let (secret, secret_op) = crate::lanes::new_secret(&id);
    let command = LaneCommand::Create { agent, ticket_id: b.ticket_id, callback_url: b.callback_url };
    let request = LaneRequest {
        lane_id: id.clone(),
        command,
        origin: origin(&caller, &ctx, "lane.create"),
        idempotency: Some(idem),
        index_ops: vec![secret_op],
    };
    let outcome = run(&app, request).await?;
    // A replay answers with the secret stored by the first request.
    let secret = match outcome.replayed {
        Some(_) => {
            app.log.index_get(store::SECRETS, &id).ok().flatten().map(|s| String::from_utf8_lossy(&s).into_owned())
        }
        None => Some(secret),
    };
    Ok(answer(StatusCode::CREATED, outcome, json!({ "callback_secret": secret })))
}

async fn lane_for(app: &App, caller: &Principal, ctx: &RequestCtx, id: &str, tool: &str) -> Result<Lane, ApiError> {
    authorize_route(caller, ctx, tool)?;
    let lane = load_lane(app, id).await?;
    if !may_see(caller, &lane) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "this lane is not the caller's")
            .policy(actors::policy::PolicyDimension::Scope));
    }
    Ok(lane)
}

#[utoipa::path(get, path = "/v1/lanes/{id}", tag = "lanes", params(("id" = String, Path)),
    responses((status = 200, body = Lane), (status = "4XX", body = ErrorBody)))]
/// A lane: status, checkpoints, current and earlier handoffs, owner.
pub(super) async fn get(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<Lane>, ApiError> {
    Ok(Json(lane_for(&app, &caller, &ctx, &id, "lane.get").await?))
}

#[utoipa::path(get, path = "/v1/lanes/{id}/timeline", tag = "lanes", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
/// A lane's audit timeline, hash-linked, oldest first.
pub(super) async fn timeline(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    lane_for(&app, &caller, &ctx, &id, "lane.timeline").await?;
    let records =
        app.log.read_stream(&store::stream(&id), 0).map_err(|e| ApiError::internal("reading the timeline", e))?;
    let events: Vec<super::tickets::TimelineEntry> = records.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "lane_id": id, "events": events })))
}

/// Body of `POST /v1/lanes/{id}/checkpoints`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCheckpoint {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub state: Value,
}

#[utoipa::path(post, path = "/v1/lanes/{id}/checkpoints", tag = "lanes", request_body = NewCheckpoint,
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "required")),
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
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
    let command = LaneCommand::Checkpoint { name: body.value.name, state: body.value.state, now_ms: now_ms() };
    let request = LaneRequest {
        lane_id: id,
        command,
        origin: origin(&caller, &ctx, "lane.checkpoint"),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::OK, run(&app, request).await?, json!({})))
}

/// What a handoff asks (direct route and the `handoff.requested` envelope's `data`).
#[derive(Deserialize, ToSchema)]
pub struct RequestHandoff {
    pub checkpoint: String,
    pub trigger_class: String,
    pub reason: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Value,
    pub queue: String,
    /// First response due within (default 300 s).
    pub sla_seconds: Option<u64>,
    /// Decision due within (default 3600 s).
    pub deadline_seconds: Option<u64>,
    /// `reject` (default) or `escalate`.
    pub timeout_action: Option<TimeoutAction>,
}

impl RequestHandoff {
    fn into_command(self, handoff_id: String) -> Result<LaneCommand, ApiError> {
        let now = now_ms();
        let sla = self.sla_seconds.unwrap_or(300);
        let deadline = self.deadline_seconds.unwrap_or(3_600);
        if !(1..=7 * 86_400).contains(&sla) || !(1..=30 * 86_400).contains(&deadline) {
            return Err(ApiError::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sla_seconds and deadline_seconds must be positive (at most 7 and 30 days)",
            ));
        }
        Ok(LaneCommand::RequestHandoff {
            request: HandoffRequest {
                handoff_id,
                checkpoint: self.checkpoint,
                trigger_class: self.trigger_class,
                reason: self.reason,
                context: self.context,
                queue: self.queue,
                sla_due_ms: now + sla as i64 * 1_000,
                deadline_ms: now + deadline as i64 * 1_000,
                timeout_action: self.timeout_action.unwrap_or(TimeoutAction::Reject),
            },
        })
    }
}

#[utoipa::path(post, path = "/v1/lanes/{id}/handoffs", tag = "lanes", request_body = RequestHandoff,
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "required")),
    responses((status = 201, body = Object), (status = "4XX", body = ErrorBody)))]
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
    let command = body.value.into_command(uuid::Uuid::now_v7().to_string())?;
    let request = LaneRequest {
        lane_id: id,
        command,
        origin: origin(&caller, &ctx, "handoff.request"),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::CREATED, run(&app, request).await?, json!({})))
}

// ---------------------------------------------------------------- the envelope

#[utoipa::path(post, path = "/v1/events", tag = "lanes", request_body = Object,
    responses((status = 202, body = Object, description = "an audit.receipt"), (status = "4XX", body = ErrorBody)))]
/// Intake of the v1 envelope (`/v1/schemas/event-envelope.v1.json`): `handoff.requested`
/// and `handoff.decided`, answered with an `audit.receipt`. The idempotency key is
/// `request_id + version`: a duplicate gets the original receipt, a different event
/// under the same key 409. Malformed envelopes, unknown major versions and unknown
/// checkpoints are refused with their own codes and nothing is stored.
pub(super) async fn events(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<Value>,
) -> Result<Response, ApiError> {
    authorize_route(&caller, &ctx, "events.submit")?;
    let env = body.value;
    let malformed = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_ENVELOPE", m.to_owned());
    let field = |k: &str| env.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let version = match env.get("version") {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(malformed("version is required (\"1.0\")")),
    };
    let major = version.split('.').next().unwrap_or_default();
    if major != "1" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED_VERSION",
            format!("envelope major version {major:?} is not supported (this server speaks 1.x)"),
        ));
    }
    let (Some(kind), Some(id), Some(request_id), Some(lane_id)) =
        (field("type"), field("id"), field("request_id"), field("lane_id"))
    else {
        return Err(malformed("type, id, request_id and lane_id are required"));
    };
    if field("occurred_at").is_none()
        || !env.get("actor").is_some_and(Value::is_object)
        || !env.get("data").is_some_and(Value::is_object)
    {
        return Err(malformed("occurred_at, actor (object) and data (object) are required"));
    }
    let data = env["data"].clone();
    let bad_data =
        |e: serde_json::Error| ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_ENVELOPE", format!("data: {e}"));
    let command = match kind.as_str() {
        "handoff.requested" => {
            serde_json::from_value::<RequestHandoff>(data).map_err(bad_data)?.into_command(id.clone())?
        }
        "handoff.decided" => {
            let d = serde_json::from_value::<DecisionBody>(data).map_err(bad_data)?;
            let handoff_id = env["data"]["handoff_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed("data.handoff_id is required"))?;
            decision_command(&app, &caller, &lane_id, &handoff_id, d).await?
        }
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "UNKNOWN_EVENT_TYPE",
                format!("unknown event type {other:?} (handoff.requested, handoff.decided)"),
            ));
        }
    };
    let lane = load_lane(&app, &lane_id).await?;
    if kind == "handoff.requested" && !may_see(&caller, &lane) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "this lane is not the caller's"));
    }
    let key = storage::IdempotencyKey {
        principal: "events".into(),
        route: "POST /v1/events".into(),
        key: format!("{request_id}@{version}"),
    };
    let request = LaneRequest {
        lane_id: lane_id.clone(),
        command,
        origin: Origin { request_id: request_id.clone(), ..origin(&caller, &ctx, "events.submit") },
        idempotency: Some((key, body.canonical_hash)),
        index_ops: vec![],
    };
    let outcome = run(&app, request).await?;
    let replayed = outcome.replayed.is_some();
    let first = outcome.replayed.as_ref().or(outcome.records.first()).map(receipt_of);
    let receipt = json!({
        "type": "audit.receipt", "version": "1.0", "id": uuid::Uuid::now_v7().to_string(), "request_id": request_id,
        "lane_id": lane_id, "correlation_id": env.get("correlation_id"), "trace_id": env.get("trace_id"),
        "occurred_at_ms": now_ms(), "data": first,
    });
    let mut response = (if replayed { StatusCode::OK } else { StatusCode::ACCEPTED }, Json(receipt)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /v1/schemas/event-envelope.v1.json`.
pub(super) async fn envelope_schema() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], ENVELOPE_SCHEMA)
}

// ---------------------------------------------------------------- operators

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    pub queue: Option<String>,
    /// OPEN, DECIDED, EXPIRED or CLOSED.
    pub status: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (1..=1000, default 100).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/handoffs", tag = "handoffs", params(QueueQuery),
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
/// Handoffs in the caller's queues (content included: operators decide on it).
pub(super) async fn queue(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Query(q): Query<QueueQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize_route(&caller, &ctx, "handoff.list")?;
    if let Some(queue) = &q.queue
        && !queue_visible(&caller, queue)
    {
        return Err(queue_forbidden(queue));
    }
    let status =
        match q.status.as_deref() {
            Some(s) => Some(HandoffStatus::parse(s).ok_or_else(|| {
                ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, format!("unknown status {s:?}"))
            })?),
            None => None,
        };
    let pairs = store::handoffs(&app.log, q.queue.as_deref()).map_err(|e| ApiError::internal("listing handoffs", e))?;
    let mut out: Vec<Handoff> = Vec::new();
    let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
    for (handoff, lane_id) in pairs {
        if !lanes.contains_key(&lane_id)
            && let Ok(lane) = load_lane(&app, &lane_id).await
        {
            lanes.insert(lane_id.clone(), lane);
        }
        let Some(h) = lanes.get(&lane_id).and_then(|l| l.all_handoffs().find(|h| h.request.handoff_id == handoff))
        else {
            continue;
        };
        if queue_visible(&caller, &h.request.queue)
            && status.is_none_or(|s| s == h.status)
            && q.queue.as_ref().is_none_or(|q| *q == h.request.queue)
        {
            out.push(h.clone());
        }
    }
    let page = super::paging::Page { cursor: q.cursor, limit: q.limit };
    let (out, next_cursor) = page.slice(out, |h| format!("{:020}:{}", h.requested_ms, h.request.handoff_id));
    Ok(Json(json!({ "handoffs": out, "next_cursor": next_cursor })))
}

async fn handoff_for(app: &App, caller: &Principal, handoff_id: &str) -> Result<(Lane, Handoff), ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "HANDOFF_NOT_FOUND", "handoff not found");
    let lane_id = store::lane_of(&app.log, handoff_id)
        .map_err(|e| ApiError::internal("finding the handoff", e))?
        .ok_or_else(not_found)?;
    let lane = load_lane(app, &lane_id).await?;
    let h = lane.all_handoffs().find(|h| h.request.handoff_id == handoff_id).cloned().ok_or_else(not_found)?;
    if !queue_visible(caller, &h.request.queue) {
        return Err(queue_forbidden(&h.request.queue));
    }
    Ok((lane, h))
}

#[utoipa::path(get, path = "/v1/handoffs/{id}", tag = "handoffs", params(("id" = String, Path)),
    responses((status = 200, body = Handoff), (status = "4XX", body = ErrorBody)))]
/// One handoff, if it is in the caller's queues.
pub(super) async fn handoff(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<Handoff>, ApiError> {
    authorize_route(&caller, &ctx, "handoff.get")?;
    Ok(Json(handoff_for(&app, &caller, &id).await?.1))
}

/// Body of `POST /v1/handoffs/{id}/decision`.
#[derive(Deserialize, ToSchema)]
pub struct DecisionBody {
    pub action: DecisionAction,
    pub reason: String,
    pub reroute_to: Option<String>,
    #[schema(value_type = Object)]
    pub context: Option<Value>,
}

async fn decision_command(
    app: &App,
    caller: &Principal,
    lane_id: &str,
    handoff_id: &str,
    d: DecisionBody,
) -> Result<LaneCommand, ApiError> {
    if caller.role == Role::Agent {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "agents do not decide handoffs")
            .policy(actors::policy::PolicyDimension::Role));
    }
    let (lane, _) = handoff_for(app, caller, handoff_id).await?;
    if lane.id != lane_id {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "HANDOFF_NOT_FOUND", "no such handoff on this lane"));
    }
    if let (DecisionAction::Reroute, Some(to)) = (d.action, &d.reroute_to)
        && !queue_visible(caller, to)
    {
        return Err(queue_forbidden(to));
    }
    Ok(LaneCommand::Decide {
        handoff_id: handoff_id.to_owned(),
        action: d.action,
        reason: d.reason,
        reroute_to: d.reroute_to,
        context: d.context,
        by: caller.sub.clone(),
        now_ms: now_ms(),
    })
}

#[utoipa::path(post, path = "/v1/handoffs/{id}/decision", tag = "handoffs", request_body = DecisionBody,
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "required")),
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
/// approve | reject (the lane resumes from the handoff's checkpoint), reroute (to a queue
/// the caller may use), add_context (stays open). 409 on a decided, expired or closed handoff.
pub(super) async fn decide(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    body: JsonBody<DecisionBody>,
) -> Result<Response, ApiError> {
    authorize_route(&caller, &ctx, "handoff.decide")?;
    let idem = super::idempotency(&caller, &ctx, body.canonical_hash)?;
    let (lane, _) = handoff_for(&app, &caller, &id).await?;
    let command = decision_command(&app, &caller, &lane.id, &id, body.value).await?;
    let request = LaneRequest {
        lane_id: lane.id,
        command,
        origin: origin(&caller, &ctx, "handoff.decide"),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::OK, run(&app, request).await?, json!({})))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for a decision (at most 60).
    pub wait: Option<u64>,
}

#[utoipa::path(get, path = "/v1/lanes/{id}/decision", tag = "lanes", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
/// The agent's long-poll: the lane's latest handoff and its decision, waiting up to
/// `wait` seconds while it is still open. `decided: false` when the wait ran out.
pub(super) async fn wait_decision(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    // Subscribe before reading, so a decision in between is not missed.
    let mut changes = app.lanes.deps.changes.subscribe();
    let mut lane = lane_for(&app, &caller, &ctx, &id, "lane.decision").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    while lane.open_handoff().is_some() {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Ok(changed)) if changed != id => continue,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                lane = load_lane(&app, &id).await?
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let h = lane.handoff.as_ref();
    Ok(Json(json!({
        "lane_id": lane.id, "status": lane.status, "decided": h.is_some_and(|h| h.decision.is_some()),
        "handoff_id": h.map(|h| &h.request.handoff_id), "handoff_status": h.map(|h| h.status), "decision": h.and_then(|h| h.decision.as_ref()),
    })))
}

// ---------------------------------------------------------------- operator controls

/// Body of the operator controls: a reason, and an owner where one is named.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub reason: String,
    pub owner: Option<String>,
}

/// Runs an operator control on a lane the caller may see.
async fn control(
    app: &App,
    caller: &Principal,
    ctx: &RequestCtx,
    id: &str,
    tool: &str,
    body: JsonBody<Control>,
) -> Result<Response, ApiError> {
    let lane = lane_for(app, caller, ctx, id, tool).await?;
    if caller.role == Role::Operator && !lane.all_handoffs().any(|h| queue_visible(caller, &h.request.queue)) {
        return Err(queue_forbidden("(none of this lane's)"));
    }
    let idem = super::idempotency(caller, ctx, body.canonical_hash)?;
    let Control { reason, owner } = body.value;
    let by = caller.sub.clone();
    let need_owner =
        || owner.clone().ok_or_else(|| ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "owner is required"));
    let command = match tool {
        "lane.escalate" => LaneCommand::Escalate { by, reason },
        "lane.assign_owner" => LaneCommand::AssignOwner { owner: need_owner()?, by, reason, reassign: false },
        "lane.reassign_owner" => LaneCommand::AssignOwner { owner: need_owner()?, by, reason, reassign: true },
        "lane.unblock" => LaneCommand::Unblock { by, reason },
        _ => LaneCommand::OverrideClose { by, reason },
    };
    let request = LaneRequest {
        lane_id: id.to_owned(),
        command,
        origin: origin(caller, ctx, tool),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::OK, run(app, request).await?, json!({})))
}

macro_rules! lane_control {
    ($name:ident, $path:literal, $tool:literal, $doc:literal) => {
        #[utoipa::path(post, path = $path, tag = "lanes", request_body = Control,
                    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "required")),
                    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
        #[doc = $doc]
        pub(super) async fn $name(
            State(app): State<App>,
            Caller(caller): Caller,
            ctx: RequestCtx,
            Path(id): Path<String>,
            body: JsonBody<Control>,
        ) -> Result<Response, ApiError> {
            control(&app, &caller, &ctx, &id, $tool, body).await
        }
    };
}

lane_control!(
    escalate,
    "/v1/lanes/{id}/escalate",
    "lane.escalate",
    "Escalate the lane (blocks it; audit event with the reason)."
);
lane_control!(assign_owner, "/v1/lanes/{id}/assign-owner", "lane.assign_owner", "Give the lane an escalation owner.");
lane_control!(
    reassign_owner,
    "/v1/lanes/{id}/reassign-owner",
    "lane.reassign_owner",
    "Hand the escalation to another owner."
);
lane_control!(unblock, "/v1/lanes/{id}/unblock", "lane.unblock", "Unblock an escalated lane.");
lane_control!(
    override_close,
    "/v1/lanes/{id}/override-close",
    "lane.override_close",
    "Close the lane by hand; the reason must start with `human_override:`."
);

#[utoipa::path(get, path = "/v1/lanes/{id}/owner", tag = "lanes", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
/// The lane's escalation owner.
pub(super) async fn owner(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lane = lane_for(&app, &caller, &ctx, &id, "lane.owner").await?;
    Ok(Json(json!({ "lane_id": lane.id, "owner": lane.owner, "status": lane.status })))
}

/// Body of freeze and unfreeze.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

async fn set_frozen(
    app: &App,
    caller: &Principal,
    ctx: &RequestCtx,
    tool: &str,
    reason: String,
    freeze: bool,
) -> Result<Json<Value>, ApiError> {
    authorize_route(caller, ctx, tool)?;
    if reason.trim().is_empty() {
        return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "a reason is required"));
    }
    let stream = "settings/lanes";
    let (seq, _) = app.log.stream_head(stream).map_err(|e| ApiError::internal("reading settings", e))?;
    let kind = if freeze { "lanes.frozen" } else { "lanes.unfrozen" };
    let event = origin(caller, ctx, tool).event(kind, None, None, &json!({ "reason": reason }));
    let op = if freeze {
        IndexOp::Put { index: SETTINGS.into(), key: FROZEN.into(), value: reason.clone().into_bytes() }
    } else {
        IndexOp::Delete { index: SETTINGS.into(), key: FROZEN.into() }
    };
    let append = Append {
        stream: stream.into(),
        expected_seq: seq,
        events: vec![event],
        index_ops: vec![op],
        ..Default::default()
    };
    app.writer.append(append).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(by = %caller.sub, freeze, %reason, "lane creation freeze changed");
    Ok(Json(json!({ "frozen": freeze, "reason": reason })))
}

#[utoipa::path(post, path = "/v1/admin/lanes/freeze", tag = "admin", request_body = Reason,
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
/// Refuse new lanes (503 `LANES_FROZEN`); reads, decisions and existing lanes keep working.
pub(super) async fn freeze(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<Reason>,
) -> Result<Json<Value>, ApiError> {
    set_frozen(&app, &caller, &ctx, "admin.lanes.freeze", body.value.reason, true).await
}

#[utoipa::path(post, path = "/v1/admin/lanes/unfreeze", tag = "admin", request_body = Reason,
    responses((status = 200, body = Object), (status = "4XX", body = ErrorBody)))]
/// Accept new lanes again.
pub(super) async fn unfreeze(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<Reason>,
) -> Result<Json<Value>, ApiError> {
    set_frozen(&app, &caller, &ctx, "admin.lanes.unfreeze", body.value.reason, false).await
}

// ---------------------------------------------------------------- DLQ and insights

/// Aggregates only: no handoff content, no lane or queue names.
#[derive(Serialize, ToSchema, Default)]
pub struct Insights {
    pub lanes: usize,
    pub checkpoints: usize,
    pub handoffs: usize,
    /// Handoffs per checkpoint: how often a step needed a person.
    pub hitl_rate: f64,
    /// Counts by outcome: approve, reject, expired, open, closed.
    pub decision_mix: BTreeMap<String, usize>,
    pub by_trigger_class: BTreeMap<String, TriggerStats>,
}

/// Latencies of one trigger class, in milliseconds.
#[derive(Serialize, ToSchema, Default)]
pub struct TriggerStats {
    pub handoffs: usize,
    pub first_response_p50_ms: Option<i64>,
    pub first_response_p95_ms: Option<i64>,
    pub decision_p50_ms: Option<i64>,
    pub decision_p95_ms: Option<i64>,
}

fn pct(sorted: &[i64], p: f64) -> Option<i64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

#[utoipa::path(get, path = "/v1/insights/handoffs", tag = "handoffs",
    responses((status = 200, body = Insights), (status = "4XX", body = ErrorBody)))]
/// The engineering view: HITL rate, decision mix, first-response and decision latency by trigger class.
pub(super) async fn insights(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
) -> Result<Json<Insights>, ApiError> {
    authorize_route(&caller, &ctx, "insights.handoffs")?;
    let mut out = Insights::default();
    let mut latencies: BTreeMap<String, (Vec<i64>, Vec<i64>, usize)> = BTreeMap::new();
    for id in store::lane_ids(&app.log).map_err(|e| ApiError::internal("listing lanes", e))? {
        let Ok(lane) = load_lane(&app, &id).await else { continue };
        out.lanes += 1;
        out.checkpoints += lane.checkpoints.len();
        for h in lane.all_handoffs() {
            out.handoffs += 1;
            let outcome = match (&h.status, &h.decision) {
                (HandoffStatus::Decided, Some(d)) => d.action.as_str(),
                (HandoffStatus::Expired, _) => "expired",
                (HandoffStatus::Closed, _) => "closed",
                _ => "open",
            };
            *out.decision_mix.entry(outcome.into()).or_default() += 1;
            let entry = latencies.entry(h.request.trigger_class.clone()).or_default();
            entry.2 += 1;
            if let Some(f) = h.first_response_ms {
                entry.0.push(f - h.requested_ms);
            }
            if let (HandoffStatus::Decided, Some(d)) = (h.status, &h.decision) {
                entry.1.push(d.at_ms - h.requested_ms);
            }
        }
    }
    out.hitl_rate = if out.checkpoints == 0 { 0.0 } else { out.handoffs as f64 / out.checkpoints as f64 };
    for (class, (mut first, mut decided, n)) in latencies {
        first.sort_unstable();
        decided.sort_unstable();
        out.by_trigger_class.insert(
            class,
            TriggerStats {
                handoffs: n,
                first_response_p50_ms: pct(&first, 0.5),
                first_response_p95_ms: pct(&first, 0.95),
                decision_p50_ms: pct(&decided, 0.5),
                decision_p95_ms: pct(&decided, 0.95),
            },
        );
    }
    Ok(Json(out))
}
