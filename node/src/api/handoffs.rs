//! Handoffs over HTTP: requesting one on a lane, the operator queue, one handoff,
//! decisions, and the agent's long-poll for the decision.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dto::lanes as dto;
use actors::kernel::Request;
use actors::lane::store;
use actors::lane::{Handoff, HandoffStatus, Lane, LaneCommand};
use actors::policy::{Principal, Role};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::lanes::{MAX_WAIT_SECONDS, answer, lane_for, load_lane, queue_forbidden, queue_visible, run};
use super::{App, authorize_route, origin};

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

#[utoipa::path(operation_id = "handoff.list", get, path = "/v1/handoffs", tag = "handoffs", params(QueueQuery),
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
    let out: Vec<dto::Handoff> = out.into_iter().map(Into::into).collect();
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
    pub reason: String,
    pub reroute_to: Option<String>,
    #[schema(value_type = Object)]
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
    let request = Request {
        id: lane.id,
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

#[utoipa::path(operation_id = "lane.decision", get, path = "/v1/lanes/{id}/decision", tag = "lanes", params(("id" = String, Path), WaitQuery),
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
    let mut changes = app.lanes.deps().changes.subscribe();
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
        "lane_id": lane.id, "status": dto::LaneStatus::from(lane.status), "decided": h.is_some_and(|h| h.decision.is_some()),
        "handoff_id": h.map(|h| &h.request.handoff_id), "handoff_status": h.map(|h| dto::HandoffStatus::from(h.status)),
        "decision": h.and_then(|h| h.decision.clone()).map(dto::Decision::from),
    })))
}
