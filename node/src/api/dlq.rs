//! The dead-letter queue of lane callbacks, scoped like the handoffs it came from:
//! an operator lists and replays only deliveries whose handoff sits in one of their
//! queues (admins see all).

use super::extract::{Path, Query};
use actors::policy::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, RequestCtx};
use super::lanes::{load_lane, queue_visible};
use super::paging::Page;
use super::{App, authorize_route};
use crate::lanes::Delivery;

/// Whether `caller` may see `d`: its handoff's queue now is one of the caller's.
async fn visible(app: &App, caller: &Principal, d: &Delivery) -> bool {
    if caller.role == actors::policy::Role::Admin {
        return true;
    }
    let Ok(lane) = load_lane(app, &d.lane_id).await else { return false };
    let handoff = actors::lane::store::handoff_of(&app.log, &lane, &d.handoff_id).ok().flatten();
    handoff.is_some_and(|h| queue_visible(caller, &h.request.queue))
}

#[utoipa::path(operation_id = "dlq.list", get, path = "/v1/dlq", tag = "handoffs", params(Page),
    responses((status = 200, body = DeadLetters), (status = "4XX", body = ErrorBody)))]
/// Callback deliveries that used up their attempts, in the caller's queues. A page
/// examines `limit` entries; those outside the caller's queues are left out, so it may
/// hold fewer.
pub(super) async fn dlq(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Query(page): Query<Page>,
) -> Result<Json<DeadLetters>, ApiError> {
    authorize_route(&caller, &ctx, "dlq.list")?;
    let entries = app
        .log
        .index_page(actors::lane::store::DLQ, "", page.cursor.as_deref(), page.limit())
        .map_err(|e| ApiError::internal("reading the DLQ", e))?;
    let next_cursor = page.next_after(&entries, |(k, _)| k.clone());
    let mut deliveries = Vec::new();
    for (_, v) in entries {
        let Ok(d) = serde_json::from_slice::<Delivery>(&v) else { continue };
        if visible(&app, &caller, &d).await {
            deliveries.push(d);
        }
    }
    Ok(Json(DeadLetters { deliveries, next_cursor }))
}

/// A page of dead letters.
#[derive(Serialize, ToSchema)]
pub struct DeadLetters {
    pub deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// A dead letter sent again.
#[derive(Serialize, ToSchema)]
pub struct Requeued {
    pub delivery: String,
    pub lane_id: String,
    pub requeued: bool,
}

#[utoipa::path(operation_id = "dlq.replay", post, path = "/v1/dlq/{id}/replay", tag = "handoffs", params(("id" = String, Path)),
    responses((status = 202, body = Requeued), (status = "4XX", body = ErrorBody)))]
/// Send a dead-lettered delivery again (a fresh round of attempts).
pub(super) async fn dlq_replay(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    authorize_route(&caller, &ctx, "dlq.replay")?;
    let stored =
        app.log.index_get(actors::lane::store::DLQ, &id).map_err(|e| ApiError::internal("reading the DLQ", e))?;
    let found = stored.and_then(|v| serde_json::from_slice::<Delivery>(&v).ok());
    match found {
        Some(d) if visible(&app, &caller, &d).await => {}
        // Outside the caller's queues looks the same as missing.
        _ => return Err(ApiError::not_found("dead-lettered delivery")),
    }
    match crate::lanes::replay(&app.log, &app.writer, &id, app.kernel.clock.now_ms())
        .await
        .map_err(ApiError::unavailable)?
    {
        Some(d) => Ok((StatusCode::ACCEPTED, Json(Requeued { delivery: d.id, lane_id: d.lane_id, requeued: true }))),
        None => Err(ApiError::not_found("dead-lettered delivery")),
    }
}
