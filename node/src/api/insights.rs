//! The engineering view: aggregates of lanes and handoffs, no content.

use std::collections::BTreeMap;

use actors::lane::HandoffStatus;
use actors::lane::store;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, RequestCtx};
use super::lanes::load_lane;
use super::{App, authorize_route};

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

#[utoipa::path(operation_id = "insights.handoffs", get, path = "/v1/insights/handoffs", tag = "handoffs",
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
        for h in store::all_handoffs(&app.log, &lane).map_err(|e| ApiError::internal("reading handoffs", e))? {
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
