//! Handoffs over HTTP: requesting one on a lane, the operator queue, one handoff,
//! decisions, and the agent's long-poll for the decision.

use std::collections::BTreeMap;
use std::time::Duration;

use super::extract::{Path, Query};
use crate::dto::lanes as dto;
use actors::kernel::Request;
use actors::lane::store;
use actors::lane::{Handoff, HandoffStatus, Lane, LaneCommand};
use actors::policy::{Principal, Role};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::lanes::{MAX_WAIT_SECONDS, answer, lane_for, load_lane, queue_forbidden, queue_visible, run};
use super::{App, authorize_route, origin};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    pub queue: Option<String>,
    /// Only handoffs with this status.
    pub status: Option<dto::HandoffStatus>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    #[serde(default, deserialize_with = "super::paging::limit")]
    #[param(schema_with = super::paging::limit_schema)]
    pub limit: Option<usize>,
}

/// A page of the caller's handoffs.
#[derive(Serialize, ToSchema)]
pub struct HandoffList {
    pub handoffs: Vec<dto::Handoff>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(operation_id = "handoff.list", get, path = "/v1/handoffs", tag = "handoffs", params(QueueQuery),
    responses((status = 200, body = HandoffList), (status = "4XX", body = ErrorBody)))]
/// Handoffs in the caller's queues (content included: operators decide on it).
pub(super) async fn queue(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Query(q): Query<QueueQuery>,
) -> Result<Json<HandoffList>, ApiError> {
    authorize_route(&caller, &ctx, "handoff.list")?;
    if let Some(queue) = &q.queue
        && !queue_visible(&caller, queue)
    {
        return Err(queue_forbidden(queue));
    }
    let status: Option<HandoffStatus> = q.status.map(Into::into);
    let pairs = store::handoffs(&app.log, q.queue.as_deref()).map_err(|e| ApiError::internal("listing handoffs", e))?;
    let mut out: Vec<Handoff> = Vec::new();
    let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
    for (handoff, lane_id) in pairs {
        if !lanes.contains_key(&lane_id)
            && let Ok(lane) = load_lane(&app, &lane_id).await
        {
            lanes.insert(lane_id.clone(), lane);
        }
        let Some(lane) = lanes.get(&lane_id) else { continue };
        let Some(h) =
            store::handoff_of(&app.log, lane, &handoff).map_err(|e| ApiError::internal("reading handoffs", e))?
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
    Ok(Json(HandoffList { handoffs: out.into_iter().map(Into::into).collect(), next_cursor }))
}

async fn handoff_for(app: &App, caller: &Principal, handoff_id: &str) -> Result<(Lane, Handoff), ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "HANDOFF_NOT_FOUND", "handoff not found");
    let lane_id = store::lane_of(&app.log, handoff_id)
        .map_err(|e| ApiError::internal("finding the handoff", e))?
        .ok_or_else(not_found)?;
    let lane = load_lane(app, &lane_id).await?;
    let h = store::handoff_of(&app.log, &lane, handoff_id)
        .map_err(|e| ApiError::internal("reading the handoff", e))?
        .ok_or_else(not_found)?;
    if !queue_visible(caller, &h.request.queue) {
        return Err(queue_forbidden(&h.request.queue));
    }
    Ok((lane, h))
}

#[utoipa::path(operation_id = "handoff.get", get, path = "/v1/handoffs/{id}", tag = "handoffs", params(("id" = String, Path)),
    responses((status = 200, body = dto::Handoff), (status = "4XX", body = ErrorBody)))]
/// One handoff, if it is in the caller's queues.
pub(super) async fn handoff(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<dto::Handoff>, ApiError> {
    authorize_route(&caller, &ctx, "handoff.get")?;
    Ok(Json(handoff_for(&app, &caller, &id).await?.1.into()))
}

/// Body of `POST /v1/handoffs/{id}/decision`.
#[derive(Deserialize, ToSchema)]
pub struct DecisionBody {
    pub action: dto::DecisionAction,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
    pub reroute_to: Option<String>,
    pub context: Option<Value>,
}

pub(super) async fn decision_command(
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
    if let (dto::DecisionAction::Reroute, Some(to)) = (d.action, &d.reroute_to)
        && !queue_visible(caller, to)
    {
        return Err(queue_forbidden(to));
    }
    Ok(LaneCommand::Decide {
        handoff_id: handoff_id.to_owned(),
        action: d.action.into(),
        reason: d.reason,
        reroute_to: d.reroute_to,
        context: d.context,
        by: caller.sub.clone(),
        now_ms: app.kernel.clock.now_ms(),
    })
}

#[utoipa::path(operation_id = "handoff.decide", post, path = "/v1/handoffs/{id}/decision", tag = "handoffs", request_body = DecisionBody,
    params(("id" = String, Path)),
    responses((status = 200, body = super::lanes::LaneAnswer), (status = "4XX", body = ErrorBody)))]
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
    let request = Request {
        id: lane.id,
        command,
        origin: origin(&caller, &ctx, "handoff.decide"),
        idempotency: Some(idem),
        index_ops: vec![],
    };
    Ok(answer(StatusCode::OK, run(&app, request).await?, None))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    #[serde(default, deserialize_with = "wait_seconds")]
    #[param(schema_with = wait_schema)]
    pub wait: Option<u64>,
}

/// The schema of `?wait=`: what [`wait_seconds`] accepts.
fn wait_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_WAIT_SECONDS as f64))
        .description(Some(format!("Seconds to wait for a decision (0..={MAX_WAIT_SECONDS}, default 0).")))
        .build()
}

/// Reads `?wait=`, refusing more than [`MAX_WAIT_SECONDS`].
fn wait_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    super::paging::query_number(d, "wait", 0..=MAX_WAIT_SECONDS).map(Some)
}

#[utoipa::path(operation_id = "handoff.await_decision", get, path = "/v1/lanes/{id}/decision", tag = "lanes", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = DecisionAnswer), (status = "4XX", body = ErrorBody)))]
/// The agent's long-poll: the lane's latest handoff and its decision, waiting up to
/// `wait` seconds while it is still open. `decided: false` when the wait ran out.
pub(super) async fn wait_decision(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<DecisionAnswer>, ApiError> {
    // Subscribe before reading, so a decision in between is not missed.
    let mut changes = app.lanes.deps().changes.subscribe();
    let mut lane = lane_for(&app, &caller, &ctx, &id, "handoff.await_decision").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0));
    let stopping = app.serving.stopped();
    tokio::pin!(stopping);
    while lane.open_handoff().is_some() {
        let change = tokio::select! {
            change = tokio::time::timeout_at(deadline, changes.recv()) => change,
            // A stopping server answers at once with what it has: the agent asks again.
            () = &mut stopping => break,
        };
        match change {
            Ok(Ok(changed)) if changed != id => continue,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                lane = load_lane(&app, &id).await?
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let h = lane.handoff.as_ref();
    Ok(Json(DecisionAnswer {
        decided: h.is_some_and(|h| h.decision.is_some()),
        handoff_id: h.map(|h| h.request.handoff_id.clone()),
        handoff_status: h.map(|h| h.status.into()),
        decision: h.and_then(|h| h.decision.clone()).map(Into::into),
        status: lane.status.into(),
        lane_id: lane.id,
    }))
}

/// The answer to the agent's long-poll.
#[derive(Serialize, ToSchema)]
pub struct DecisionAnswer {
    pub lane_id: String,
    pub status: dto::LaneStatus,
    /// Whether the lane's latest handoff has a decision (false when the wait ran out).
    pub decided: bool,
    pub handoff_id: Option<String>,
    pub handoff_status: Option<dto::HandoffStatus>,
    pub decision: Option<dto::Decision>,
}
