//! The Model Context Protocol edge at `/mcp`. The official SDK (rmcp) speaks the
//! protocol: Streamable HTTP, version negotiation, `initialize`, JSON-RPC errors. This
//! module only says which tools and resources a caller has and turns each call into a
//! request on the HTTP API's own router ([`forward`]), so MCP and HTTP share one route,
//! policy, scope, idempotency and audit path.
//!
//! It keeps no MCP session: every POST carries its bearer token and is served on its own.
//! The specification lets a server assign no session id (and its 2026-07-28 revision
//! drops sessions), so there is no session state to bound, expire or take over.

mod forward;
mod resources;
mod tools;

use std::sync::Arc;

use actors::policy::Principal;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Deserialize;

use crate::api::App;

pub use tools::MAX_AWAIT_SECONDS;

/// `/mcp`, served in front of `api` (the HTTP API's router), which runs every call.
pub fn router(app: App, api: Router) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        // Plain JSON answers, unless a call sends progress notifications before its result.
        .with_json_response(true)
        .with_max_request_body_bytes(crate::api::JSON_BODY_LIMIT)
        // The Host check guards servers that trust whoever can reach them (DNS rebinding);
        // this one trusts only bearer tokens, and is reached under any name it is given.
        .disable_allowed_hosts();
    let server = DispatchMcp { api };
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(NeverSessionManager::default()), config);
    Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(middleware::from_fn_with_state(app, crate::api::observe))
}

/// Refuses a request without a valid bearer token before the protocol reads it (401 with
/// `WWW-Authenticate: Bearer`, as MCP's authorization section asks), then a message over
/// [`crate::api::JSON_BODY_LIMIT`] (413), one that is not JSON (400, JSON-RPC's parse
/// error) or not a JSON-RPC message (400, invalid request), and hands the verified caller to the handler.
async fn authenticate(State(app): State<App>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let caller = match crate::api::authenticate(&parts, &app) {
        Ok(caller) => caller,
        Err(refusal) => {
            let mut response = refusal.into_response();
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    parts.extensions.insert(caller);
    if parts.method != axum::http::Method::POST {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let Ok(bytes) = axum::body::to_bytes(body, crate::api::JSON_BODY_LIMIT).await else {
        let message = format!("an MCP message may be at most {} bytes", crate::api::JSON_BODY_LIMIT);
        return jsonrpc_error(StatusCode::PAYLOAD_TOO_LARGE, -32600, &message);
    };
    let message = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(message) => message,
        Err(e) => return jsonrpc_error(StatusCode::BAD_REQUEST, -32700, &format!("parse error: {e}")),
    };
    if let Err(e) = rmcp::model::ClientJsonRpcMessage::deserialize(message) {
        return jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            &format!("not a JSON-RPC 2.0 request or notification: {e}"),
        );
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// A JSON-RPC error answering a message that could not be read (so it has no id).
fn jsonrpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// The MCP server: the catalogue and resources of whoever calls, run on `api`.
#[derive(Clone)]
struct DispatchMcp {
    api: Router,
}

/// The caller the authentication layer verified for this request.
fn caller_of(cx: &RequestContext<RoleServer>) -> Result<Principal, McpError> {
    cx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| McpError::internal_error("the request reached MCP without a verified caller", None))
}

impl ServerHandler for DispatchMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("dispatch", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "dispatch's closed tool catalogue: tickets, agent lanes and human handoffs, tasks. \
                 tools/list shows only the tools your token may use. A mutating tool is retried safely: \
                 the same arguments (or the same idempotency_key) replay the first answer. \
                 To ask a person: lane.open, handoff.request, then handoff.await_decision until it is \
                 no longer pending.",
            )
    }

    async fn list_tools(
        &self,
        _page: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools::catalogue(&caller_of(&cx)?)))
    }

    async fn call_tool(
        &self,
        call: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let origin = forward::Origin::of(&cx)?;
        let args = call.arguments.unwrap_or_default();
        Ok(tools::call(&self.api, &origin, &call.name, args, &cx).await.into())
    }

    async fn list_resources(
        &self,
        _page: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(resources::fixed(&caller_of(&cx)?)))
    }

    async fn list_resource_templates(
        &self,
        _page: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates(&caller_of(&cx)?)))
    }

    async fn read_resource(
        &self,
        read: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let origin = forward::Origin::of(&cx)?;
        resources::read(&self.api, &origin, &read.uri).await.map(Into::into)
    }
}
