//! One MCP call becomes one request on the HTTP API's router: the caller's own
//! `Authorization`, the route's tool in `X-Tool-Name`, the MCP request as `X-Request-Id`
//! and a correlation id, so the guard, the handlers and the audit trail see exactly what
//! they see from any HTTP client.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, request::Parts};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::Value;

/// What every forwarded request carries from the MCP request that caused it.
pub(super) struct Origin {
    authorization: Option<HeaderValue>,
    peer: Option<ConnectInfo<std::net::SocketAddr>>,
    /// `mcp-<JSON-RPC id>`: the timeline names the MCP request.
    request_id: String,
    /// `_meta.correlation_id` of the call, else the POST's `X-Correlation-Id`, else a new one.
    pub correlation_id: String,
}

impl Origin {
    pub(super) fn of(cx: &RequestContext<RoleServer>) -> Result<Origin, McpError> {
        let parts = cx
            .extensions
            .get::<Parts>()
            .ok_or_else(|| McpError::internal_error("the MCP request carries no HTTP request", None))?;
        let printable = |v: &str| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic());
        let from_meta = cx.meta.0.get("correlation_id").and_then(Value::as_str).filter(|v| printable(v));
        let from_header = parts.headers.get("x-correlation-id").and_then(|v| v.to_str().ok()).filter(|v| printable(v));
        let id = match serde_json::to_value(&cx.id).unwrap_or_default() {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let request_id: String = format!("mcp-{id}").chars().filter(char::is_ascii_graphic).take(128).collect();
        Ok(Origin {
            authorization: parts.headers.get(axum::http::header::AUTHORIZATION).cloned(),
            peer: parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().copied(),
            request_id,
            correlation_id: from_meta
                .or(from_header)
                .map_or_else(|| format!("mcp-{}", uuid::Uuid::new_v4()), str::to_owned),
        })
    }
}

/// A route's answer: its status, its JSON body and whether it replayed a first answer.
pub(super) struct Answer {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

/// What to send: the route's tool, method, path with query, JSON body, idempotency key.
pub(super) struct Call<'a> {
    pub tool: &'a str,
    pub method: &'a str,
    pub uri: String,
    pub body: Option<Value>,
    pub idempotency_key: Option<String>,
}

/// Runs `call` on the API router as `origin`'s caller.
pub(super) async fn send(api: &Router, origin: &Origin, call: Call<'_>) -> Answer {
    let body = call.body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let mut builder = Request::builder()
        .method(call.method)
        .uri(&call.uri)
        .header("content-type", "application/json")
        .header("x-tool-name", call.tool)
        .header("x-request-id", &origin.request_id)
        .header("x-correlation-id", &origin.correlation_id);
    if let Some(auth) = &origin.authorization {
        builder = builder.header(axum::http::header::AUTHORIZATION, auth);
    }
    if let Some(key) = &call.idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    let mut request = match builder.body(body) {
        Ok(request) => request,
        Err(e) => return refusal(400, "VALIDATION_ERROR", &format!("cannot form the request: {e}")),
    };
    if let Some(peer) = origin.peer {
        request.extensions_mut().insert(peer);
    }
    let (status, headers, bytes) = match crate::api::call_in_process(api, request).await {
        Ok(answer) => answer,
        Err(e) => return refusal(500, "INTERNAL", &e),
    };
    let status = status.as_u16();
    let replayed = headers.contains_key("idempotent-replayed");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Answer { status, body, replayed }
}

/// A refusal made at the MCP edge, shaped as the API's error body.
pub(super) fn refusal(status: u16, code: &str, message: &str) -> Answer {
    let body = serde_json::json!({ "error": { "code": code, "message": message, "details": {} } });
    Answer { status, body, replayed: false }
}
