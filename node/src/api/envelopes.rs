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
    responses((status = 202, body = AuditReceipt), (status = 200, body = AuditReceipt, description = "a duplicate: the original receipt"),
        (status = "4XX", body = ErrorBody)))]
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
    let text = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_owned);
    let receipt = AuditReceipt {
        kind: "audit.receipt",
        version: "1.0",
        id: app.kernel.ids.next_id().to_string(),
        request_id,
        lane_id,
        correlation_id: text("correlation_id"),
        trace_id: text("trace_id"),
        occurred_at_ms: app.kernel.clock.now_ms(),
        data: first,
    };
    let mut response = (if replayed { StatusCode::OK } else { StatusCode::ACCEPTED }, Json(receipt)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The answer to an envelope: where its event landed (an `audit.receipt` envelope).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditReceipt {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: &'static str,
    pub id: String,
    pub request_id: String,
    pub lane_id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub occurred_at_ms: i64,
    /// The first event written (or, for a duplicate, first written).
    pub data: Option<super::lanes::EventReceipt>,
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

/// Checks the envelope's own fields as `event-envelope.v1.json` states them.
fn header(env: &Value) -> Result<Header, ApiError> {
    let field = |k: &str| env.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let version = field("version").ok_or_else(|| malformed("version is required (\"1.0\")"))?;
    let (major, minor) = version.split_once('.').unwrap_or((&version, "0"));
    if major.is_empty() || minor.is_empty() || !format!("{major}{minor}").bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("version is MAJOR or MAJOR.MINOR, e.g. \"1.0\""));
    }
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
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if env.get("occurred_at").and_then(Value::as_str).is_none_or(|t| time::OffsetDateTime::parse(t, rfc3339).is_err())
        || !["kind", "id"].iter().all(|k| env["actor"][k].is_string())
        || !env.get("data").is_some_and(Value::is_object)
    {
        return Err(malformed("occurred_at (RFC 3339), actor {kind, id} and data (object) are required"));
    }
    if ["correlation_id", "trace_id"].iter().any(|k| env.get(*k).is_some_and(|v| !v.is_string() && !v.is_null())) {
        return Err(malformed("correlation_id and trace_id are strings when given"));
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

/// The body `POST /v1/events` takes: the published envelope schema, narrowed to the
/// two intake types, with each type's `data` the schema of the body the same
/// command takes on its own route.
pub(super) fn intake_schema() -> Value {
    let mut schema: Value = serde_json::from_str(ENVELOPE_SCHEMA).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("$id");
    }
    schema["properties"]["type"] = json!({ "enum": ["handoff.requested", "handoff.decided"] });
    let data = |then: Value| json!({ "properties": { "data": then } });
    schema["allOf"] = json!([
        { "if": { "properties": { "type": { "const": "handoff.requested" } } },
          "then": data(json!({ "$ref": "#/components/schemas/RequestHandoff" })) },
        { "if": { "properties": { "type": { "const": "handoff.decided" } } },
          "then": data(json!({ "allOf": [
              { "$ref": "#/components/schemas/DecisionBody" },
              { "required": ["handoff_id"], "properties": { "handoff_id": { "type": "string" } } },
          ] })) },
    ]);
    schema
}

/// `GET /v1/schemas/event-envelope.v1.json`.
pub(super) async fn envelope_schema() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], ENVELOPE_SCHEMA)
}
