//! Worker nodes and the bootstrap tokens they join with (admin; reads also for
//! operators and engineers). The cluster side (QUIC) does the joining itself.

use std::collections::BTreeMap;
use std::time::Duration;

use super::extract::{Path, Query};
use actors::node::{MembershipError, NodeCommand, NodeConfig, NodeError, TokenRefusal};
use actors::policy::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::{App, authorize_route, origin};
use crate::dto::nodes::{JoinToken, Node, NodeView};

/// Default and longest lifetimes of a bootstrap token.
const DEFAULT_TTL_SECONDS: u64 = 15 * 60;
/// How many nodes one join token may admit.
pub(crate) const JOIN_TOKEN_USES: std::ops::RangeInclusive<u32> = 1..=10_000;
/// How long a join token may live, in seconds (up to a week).
pub(crate) const JOIN_TOKEN_TTL_SECONDS: std::ops::RangeInclusive<u64> = 1..=7 * 24 * 3600;

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::Node(NodeError::NotFound) => ApiError::not_found("node"),
            MembershipError::Token(TokenRefusal::Unknown) => ApiError::not_found("join token"),
            MembershipError::Node(NodeError::Removed) => {
                ApiError::new(StatusCode::CONFLICT, "NODE_REMOVED", "the node was removed; nothing more can change")
            }
            MembershipError::Node(NodeError::InvalidConfig(m)) | MembershipError::Invalid(m) => {
                ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, m)
            }
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

/// Body of `POST /v1/join-tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// Lifetime in seconds (default 900, at most 604800).
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::join_token_ttl)]
    pub ttl_seconds: Option<u64>,
    /// How many nodes may join with it (default 1).
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::join_token_uses)]
    pub uses: Option<u32>,
    /// Labels given to every node that joins with it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A new bootstrap token. The token string is shown once; only its record is kept.
#[derive(Serialize, ToSchema)]
pub struct CreatedJoinToken {
    pub token: String,
    #[serde(flatten)]
    pub record: JoinToken,
}

#[utoipa::path(operation_id = "join_token.create", post, path = "/v1/join-tokens", tag = "nodes", request_body = CreateJoinToken,
    responses((status = 201, body = CreatedJoinToken), (status = "4XX", body = ErrorBody)))]
/// Create a bootstrap token for `dispatch agent --role worker --join … --token …`.
/// A retry creates another token (harmless: unused tokens expire), so no
/// Idempotency-Key is needed.
pub(super) async fn create_token(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<CreateJoinToken>,
) -> Result<(StatusCode, Json<CreatedJoinToken>), ApiError> {
    authorize_route(&caller, &ctx, "join_token.create")?;
    let b = body.value;
    let ttl = b.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !JOIN_TOKEN_TTL_SECONDS.contains(&ttl) {
        return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "ttl_seconds must be between 1 and 604800"));
    }
    let uses = b.uses.unwrap_or(1);
    if !JOIN_TOKEN_USES.contains(&uses) {
        return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "uses must be between 1 and 10000"));
    }
    let (record, token) = app
        .cluster
        .create_token(b.labels, uses, Duration::from_secs(ttl), origin(&caller, &ctx, "join_token.create"))
        .await?;
    tracing::info!(token_id = %record.id, uses, ttl, by = %caller.sub, "join token created");
    Ok((StatusCode::CREATED, Json(CreatedJoinToken { token, record: record.into() })))
}

/// Every bootstrap token (without its secret string).
#[derive(Serialize, ToSchema)]
pub struct JoinTokenList {
    pub tokens: Vec<JoinToken>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(operation_id = "join_token.list", get, path = "/v1/join-tokens", tag = "nodes", params(super::paging::Page),
    responses((status = 200, body = JoinTokenList), (status = "4XX", body = ErrorBody)))]
/// List bootstrap tokens with their remaining uses.
pub(super) async fn list_tokens(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    super::extract::Query(page): super::extract::Query<super::paging::Page>,
) -> Result<Json<JoinTokenList>, ApiError> {
    authorize_route(&caller, &ctx, "join_token.list")?;
    let (tokens, next_cursor) = page.slice(app.cluster.membership.tokens().await?, |t| t.id.clone());
    Ok(Json(JoinTokenList { tokens: tokens.into_iter().map(JoinToken::from).collect(), next_cursor }))
}

#[utoipa::path(operation_id = "join_token.revoke", post, path = "/v1/join-tokens/{id}/revoke", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, body = JoinToken), (status = "4XX", body = ErrorBody)))]
/// Revoke a bootstrap token: no node can join with it any more.
pub(super) async fn revoke_token(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<JoinToken>, ApiError> {
    authorize_route(&caller, &ctx, "join_token.revoke")?;
    let origin = origin(&caller, &ctx, "join_token.revoke");
    Ok(Json(app.cluster.membership.revoke_token(&id, origin).await?.into()))
}

/// Every node.
#[derive(Serialize, ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(operation_id = "node.list", get, path = "/v1/nodes", tag = "nodes", params(super::paging::Page),
    responses((status = 200, body = NodeList), (status = "4XX", body = ErrorBody)))]
/// List worker nodes with their state, capabilities and configuration.
pub(super) async fn list(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    super::extract::Query(page): super::extract::Query<super::paging::Page>,
) -> Result<Json<NodeList>, ApiError> {
    authorize_route(&caller, &ctx, "node.list")?;
    // Node ids sort by number (node-2 before node-10) for the cursor.
    let key = |v: &actors::node::NodeView| {
        format!("{:020}", v.node.id.trim_start_matches("node-").parse::<u64>().unwrap_or(0))
    };
    let (nodes, next_cursor) = page.slice(app.cluster.membership.nodes().await?, key);
    Ok(Json(NodeList { nodes: nodes.into_iter().map(NodeView::from).collect(), next_cursor }))
}

#[utoipa::path(operation_id = "node.get", get, path = "/v1/nodes/{id}", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, body = NodeView), (status = "4XX", body = ErrorBody)))]
/// Read one node.
pub(super) async fn get(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    authorize_route(&caller, &ctx, "node.get")?;
    let node = app.cluster.membership.lookup(&id).await.ok_or_else(|| ApiError::not_found("node"))?;
    Ok(Json(node.view().await?.into()))
}

async fn command(
    app: &App,
    caller: &Principal,
    ctx: &RequestCtx,
    id: &str,
    tool: &str,
    command: NodeCommand,
) -> Result<Json<Node>, ApiError> {
    authorize_route(caller, ctx, tool)?;
    let node = app.cluster.membership.command(id, command, origin(caller, ctx, tool)).await?;
    tracing::info!(node = %id, tool, by = %caller.sub, state = node.state.as_str(), "node command");
    Ok(Json(node.into()))
}

#[utoipa::path(operation_id = "node.drain", post, path = "/v1/nodes/{id}/drain", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)))]
/// Drain a node: it keeps running what it has but gets no new work. Repeating is a no-op.
pub(super) async fn drain(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<Node>, ApiError> {
    command(&app, &caller, &ctx, &id, "node.drain", NodeCommand::Drain).await
}

/// `?force=` of `POST /v1/nodes/{id}/remove`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Remove the node even though it is the worker running inside this process
    /// (`dispatch up`): its tasks then have nowhere to run until the next start.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(operation_id = "node.remove", post, path = "/v1/nodes/{id}/remove", tag = "nodes", params(("id" = String, Path), RemoveQuery),
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)))]
/// Remove a node for good: its connection is closed and its certificate refused.
/// The worker inside `dispatch up` is removed only with `force=true` (409 `LOCAL_NODE`).
pub(super) async fn remove(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<Node>, ApiError> {
    if !q.force && app.local_node.get() == Some(&id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "LOCAL_NODE",
            format!("{id} is the worker running inside this orchestrator; remove it with force=true (`--force`)"),
        ));
    }
    command(&app, &caller, &ctx, &id, "node.remove", NodeCommand::Remove).await
}

/// Body of `PUT /v1/nodes/{id}/config`: the fields to change; the rest stay.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    #[schema(schema_with = crate::dto::rules::heartbeat_interval_ms)]
    pub heartbeat_interval_ms: Option<u64>,
    #[schema(schema_with = crate::dto::rules::max_concurrent_jobs)]
    pub max_concurrent_jobs: Option<u32>,
    #[schema(schema_with = crate::dto::rules::optional_non_blank)]
    pub sandbox_image: Option<String>,
    #[schema(schema_with = crate::dto::rules::network_policies)]
    pub allowed_network_policies: Option<Vec<String>>,
    pub default_memory_bytes: Option<u64>,
    pub default_cpu_millis: Option<u32>,
    pub labels: Option<BTreeMap<String, String>>,
}

impl ConfigChange {
    fn apply(self, mut c: NodeConfig) -> NodeConfig {
        c.heartbeat_interval_ms = self.heartbeat_interval_ms.unwrap_or(c.heartbeat_interval_ms);
        c.max_concurrent_jobs = self.max_concurrent_jobs.unwrap_or(c.max_concurrent_jobs);
        c.sandbox_image = self.sandbox_image.unwrap_or(c.sandbox_image);
        c.allowed_network_policies = self.allowed_network_policies.unwrap_or(c.allowed_network_policies);
        c.default_memory_bytes = self.default_memory_bytes.unwrap_or(c.default_memory_bytes);
        c.default_cpu_millis = self.default_cpu_millis.unwrap_or(c.default_cpu_millis);
        c.labels = self.labels.unwrap_or(c.labels);
        c
    }
}

#[utoipa::path(operation_id = "node.config.set", put, path = "/v1/nodes/{id}/config", tag = "nodes", params(("id" = String, Path)),
    request_body = ConfigChange, responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)))]
/// Change a node's configuration. A real change bumps `config_version`; the node
/// gets it over its connection (or when it reconnects) and acknowledges it.
pub(super) async fn set_config(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
    body: JsonBody<ConfigChange>,
) -> Result<Json<Node>, ApiError> {
    authorize_route(&caller, &ctx, "node.config.set")?;
    let node = app.cluster.membership.lookup(&id).await.ok_or_else(|| ApiError::not_found("node"))?;
    let config = body.value.apply(node.view().await?.node.config);
    command(&app, &caller, &ctx, &id, "node.config.set", NodeCommand::SetConfig { config }).await
}
