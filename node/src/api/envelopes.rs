//! The v1 event envelope over HTTP: `POST /v1/events` (`handoff.requested`,
//! `handoff.decided`, answered with an `audit.receipt`) and its JSON Schema.

use actors::kernel::Request;
use actors::lane::LaneCommand;
use actors::node::Origin;
use actors::policy::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::handoffs::{DecisionBody, decision_command};
use super::lanes::{ENVELOPE_SCHEMA, RequestHandoff, load_lane, may_see, receipt_of, run};
use super::{App, authorize_route, origin};

#[utoipa::path(operation_id = "events.submit", post, path = "/v1/events", tag = "lanes", request_body = Object,
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
    let Header { version, kind, id, request_id, lane_id } = header(&env)?;
    let command = command_of(&app, &caller, &kind, &id, &lane_id, &env).await?;
    let lane = load_lane(&app, &lane_id).await?;
    if kind == "handoff.requested" && !may_see(&caller, &lane) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "this lane is not the caller's"));
    }
    let key = actors::storage::IdempotencyKey {
        principal: "events".into(),
        route: "POST /v1/events".into(),
        key: format!("{request_id}@{version}"),
    };
    let request = Request {
        id: lane_id.clone(),
        command,
        origin: Origin { request_id: request_id.clone(), ..origin(&caller, &ctx, "events.submit") },
        idempotency: Some((key, body.canonical_hash)),
        index_ops: vec![],
    };
    let outcome = run(&app, request).await?;
    let replayed = outcome.replayed;
    let first = outcome.records.first().map(receipt_of);
    let receipt = json!({
        "type": "audit.receipt", "version": "1.0", "id": app.kernel.ids.next_id().to_string(), "request_id": request_id,
        "lane_id": lane_id, "correlation_id": env.get("correlation_id"), "trace_id": env.get("trace_id"),
        "occurred_at_ms": app.kernel.clock.now_ms(), "data": first,
    });
    let mut response = (if replayed { StatusCode::OK } else { StatusCode::ACCEPTED }, Json(receipt)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn malformed(m: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_ENVELOPE", m.to_owned())
}

/// What every envelope must say about itself.
struct Header {
    version: String,
    kind: String,
    id: String,
    request_id: String,
    lane_id: String,
}

fn header(env: &Value) -> Result<Header, ApiError> {
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
    Ok(Header { version, kind, id, request_id, lane_id })
}

/// The lane command an envelope asks for.
async fn command_of(
    app: &App,
    caller: &Principal,
    kind: &str,
    id: &str,
    lane_id: &str,
    env: &Value,
) -> Result<LaneCommand, ApiError> {
    let data = env["data"].clone();
    let bad_data =
        |e: serde_json::Error| ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_ENVELOPE", format!("data: {e}"));
    Ok(match kind {
        "handoff.requested" => serde_json::from_value::<RequestHandoff>(data)
            .map_err(bad_data)?
            .into_command(id.to_owned(), app.kernel.clock.now_ms())?,
        "handoff.decided" => {
            let d = serde_json::from_value::<DecisionBody>(data).map_err(bad_data)?;
            let handoff_id = env["data"]["handoff_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed("data.handoff_id is required"))?;
            decision_command(app, caller, lane_id, &handoff_id, d).await?
        }
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "UNKNOWN_EVENT_TYPE",
                format!("unknown event type {other:?} (handoff.requested, handoff.decided)"),
            ));
        }
    })
}

/// `GET /v1/schemas/event-envelope.v1.json`.
pub(super) async fn envelope_schema() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], ENVELOPE_SCHEMA)
}
