//! The HTTP API under `/v1`: a thin edge that authenticates, checks the policy
//! table, and hands commands to the ticket actors or reads the log's read models.

mod access;
mod accounts;
mod admin;
pub mod audit;
mod blobs;
mod dlq;
mod envelopes;
pub mod error;
mod extract;
mod guard;
mod handoffs;
pub mod identity;
mod insights;
mod lanes;
mod nodes;
pub(crate) mod openapi;
mod paging;
mod routes;
mod stream;
mod system;
mod tasks;
mod tickets;
pub mod tokens;
mod ux;

use std::sync::Arc;
use std::time::Instant;

use actors::kernel::Origin;
use actors::policy::{self, Principal, ToolSpec};
use actors::storage::{BlobStore, IdempotencyKey, Log, LogWriter};
use actors::ticket::{Templates, TicketError};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Auth;
use error::{ApiError, REQUEST_ID};
use extract::RequestCtx;

pub(crate) use accounts::{MIN_PASSWORD, client_address};
pub(crate) use admin::TOKEN_TTL_SECONDS;
pub(crate) use extract::{
    IDEMPOTENCY_KEY_PATTERN, IDEMPOTENCY_KEY_RULE, authenticate, canonical_sha256, is_idempotency_key,
};
pub(crate) use lanes::LANE_ID_PATTERN;
pub(crate) use nodes::{JOIN_TOKEN_TTL_SECONDS, JOIN_TOKEN_USES};
pub use stream::{StreamLimits, Streams};

/// Largest JSON body accepted.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;
/// Largest evidence file accepted by `POST /v1/blobs`.
pub const BLOB_BODY_LIMIT: usize = 25 * 1024 * 1024;

/// Everything a handler may use.
pub struct AppInner {
    pub log: Log,
    pub writer: LogWriter,
    pub blobs: BlobStore,
    pub templates: Arc<Templates>,
    /// The command path every entity runs on: log, writer, clock, ids.
    pub kernel: actors::kernel::Kernel,
    pub tickets: actors::kernel::Entities<actors::ticket::Tickets>,
    /// Joins, node connections and membership.
    pub cluster: Arc<crate::cluster_edge::OrchestratorCluster>,
    /// Puts tasks on nodes.
    pub tasks: crate::dispatch::Dispatcher,
    pub inference: crate::config::InferenceConfig,
    /// The lane actors.
    pub lanes: actors::lane::LaneHandle,
    pub auth: Auth,
    /// Accept `X-Actor-*` identity headers (development only).
    pub dev_headers: bool,
    pub metrics: PrometheusHandle,
    /// Login rate limits.
    pub login_limits: crate::api::identity::LoginLimits,
    /// Verified when a login names no usable account, so timing reveals nothing.
    /// Which internal hosts lane callbacks may name.
    pub callbacks: crate::outbound::AddressPolicy,
    /// Limits at the edges: trusted proxies, free space, quotas.
    pub edge: crate::config::EdgeConfig,
    /// Blob quota checks and charges run one at a time.
    pub blob_quota: tokio::sync::Mutex<()>,
    /// Commands that could take away the last admin run one at a time, so two of them
    /// cannot each see another admin left.
    pub admin_changes: tokio::sync::Mutex<()>,
    /// The worker node running inside this process (`dispatch up`), once it has joined.
    pub local_node: std::sync::OnceLock<String>,
    /// Free space of the data dir's filesystem, for the 507 reserve.
    pub free_space: FreeSpace,
    /// Requests in flight, and whether the server has begun to stop.
    pub serving: Serving,
    /// Open event streams per principal (`GET /v1/stream`).
    pub streams: stream::Streams,
    /// Whether the API is served over HTTPS (the console's cookies are then `Secure`).
    pub https: bool,
}

/// What stopping needs to know of the requests being served: how many there are (to say
/// what it waits for) and a signal that open long-polls answer on at once.
pub struct Serving {
    in_flight: std::sync::atomic::AtomicUsize,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Default for Serving {
    fn default() -> Self {
        Serving { in_flight: Default::default(), stopping: tokio::sync::watch::Sender::new(false) }
    }
}

impl Serving {
    /// Requests from clients being served now (an MCP call counts once, not again for
    /// the route it runs on).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Begins stopping: every open long-poll answers with what it has.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether stopping has begun, as it changes (for open event streams).
    pub fn watch_stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Resolves once [`Serving::stop`] has been called.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|s| *s).await;
    }

    /// Counts a request until the guard drops (also when the request is cancelled).
    fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("dispatch_http_requests_in_flight").increment(1.0);
        InFlight(self)
    }
}

struct InFlight<'a>(&'a Serving);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("dispatch_http_requests_in_flight").decrement(1.0);
    }
}

/// Marks a request the server makes to its own router ([`call_in_process`]), so it is
/// not counted as a second request in flight.
#[derive(Clone, Copy)]
pub(crate) struct Forwarded;

/// The largest answer read back from a route called in-process (a full page of a list
/// is far smaller).
const IN_PROCESS_ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// Runs `request` on the API's router from inside the server (an MCP tool call, a console
/// page's read): the same guard, policy and handlers as any client, marked [`Forwarded`].
/// The answer's status, headers and body, or why its body could not be read.
pub(crate) async fn call_in_process(
    api: &Router,
    mut request: Request,
) -> Result<(StatusCode, axum::http::HeaderMap, axum::body::Bytes), String> {
    request.extensions_mut().insert(Forwarded);
    let Ok(response) = tower::Service::call(&mut api.clone(), request).await;
    let (parts, body) = response.into_parts();
    let bytes =
        axum::body::to_bytes(body, IN_PROCESS_ANSWER_LIMIT).await.map_err(|e| format!("reading the answer: {e}"))?;
    Ok((parts.status, parts.headers, bytes))
}

/// Free bytes of a directory's filesystem. A measurement with room to spare is reused
/// for [`FreeSpace::EVERY`] (space changes slowly, requests come fast); one under the
/// reserve is always taken again, so freed space is seen at once.
pub struct FreeSpace {
    dir: std::path::PathBuf,
    last: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl FreeSpace {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(100);

    /// Watches the filesystem `dir` lives on.
    pub fn new(dir: std::path::PathBuf) -> Self {
        FreeSpace { dir, last: std::sync::Mutex::new(None) }
    }

    /// The free bytes, when they are under `reserve` (None: enough, or no answer).
    pub fn under(&self, reserve: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, free)) = *last
            && at.elapsed() < Self::EVERY
            && free >= reserve
        {
            return None;
        }
        let free = self.bytes()?;
        *last = Some((Instant::now(), free));
        (free < reserve).then_some(free)
    }

    /// The free bytes now (None: the filesystem did not answer).
    pub fn bytes(&self) -> Option<u64> {
        rustix::fs::statvfs(&self.dir).ok().map(|s| s.f_bavail.saturating_mul(s.f_frsize))
    }
}

/// Shared handler state.
#[derive(Clone)]
pub struct App(pub Arc<AppInner>);

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// The whole HTTP surface: the API, MCP at `/mcp` and the web console at `/`, both
/// in front of the API.
pub fn router(app: App) -> Router {
    let api = api_router(app.clone());
    api.clone().merge(crate::mcp::router(app.clone(), api.clone())).merge(crate::console::router(app, api))
}

/// The API's routes, each behind the route guard, with the edge's limits and metrics.
fn api_router(app: App) -> Router {
    let (v1, _) = routes::routes().split_for_parts();
    v1.route_layer(middleware::from_fn_with_state(app.clone(), guard::authorize_first))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "method not allowed on this route")
        })
        .layer(middleware::from_fn_with_state(app.clone(), reserve_space))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(app)
}

/// Gives each request an id (or keeps the caller's `X-Request-Id`), and records its
/// count and latency by route template, so label values stay bounded.
pub(crate) async fn observe(
    axum::extract::State(app): axum::extract::State<App>,
    req: Request,
    next: Next,
) -> Response {
    let _in_flight = req.extensions().get::<Forwarded>().is_none().then(|| app.serving.enter());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(request_id.clone(), next.run(req)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    metrics::counter!("dispatch_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("dispatch_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(elapsed);
    tracing::debug!(request_id, method, route, status, duration_ms = elapsed * 1e3, "request");
    response
}

/// New work is refused (507) while the data dir's filesystem is under its reserve, so
/// the log itself always has room to record what is already under way. Sign-in and
/// sign-out stay open.
async fn reserve_space(axum::extract::State(app): axum::extract::State<App>, req: Request, next: Next) -> Response {
    let mutating = matches!(*req.method(), axum::http::Method::POST | axum::http::Method::PUT);
    if mutating
        && !req.uri().path().starts_with("/v1/auth/")
        && app.edge.min_free_bytes > 0
        && let Some(free) = app.free_space.under(app.edge.min_free_bytes)
    {
        metrics::counter!("dispatch_requests_refused_for_space_total").increment(1);
        let message = format!(
            "the data dir's filesystem has {} KiB free, under the {} KiB kept for the log; free space or raise the disk",
            free >> 10,
            app.edge.min_free_bytes >> 10
        );
        drain(req.into_body()).await;
        return ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "INSUFFICIENT_STORAGE", message).into_response();
    }
    next.run(req).await
}

/// Reads and drops what a refused request is still sending (an upload of up to
/// [`BLOB_BODY_LIMIT`], for at most 10 s): answered before its body was read, a client
/// still writing it got a broken pipe instead of the answer (a test upload saw it).
async fn drain(body: axum::body::Body) {
    use futures_util::StreamExt;
    let mut chunks = body.into_data_stream();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut read = 0;
        while read <= BLOB_BODY_LIMIT
            && let Some(Ok(chunk)) = chunks.next().await
        {
            read += chunk.len();
        }
    })
    .await;
}

/// Role, token tool list and the `X-Tool-Name` header, for a route's tool.
fn authorize_route(caller: &Principal, ctx: &RequestCtx, tool: &str) -> Result<&'static ToolSpec, ApiError> {
    let spec = policy::tool(tool).ok_or_else(|| ApiError::internal("policy lookup", tool))?;
    if caller.tools.is_some() && ctx.tool_name.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "TOOL_NOT_ALLOWED",
            "a token limited to tools must name the tool it calls in X-Tool-Name",
        )
        .policy(policy::PolicyDimension::Tool));
    }
    if let Some(named) = &ctx.tool_name
        && named != spec.name
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "TOOL_NOT_ALLOWED",
            format!("X-Tool-Name {named:?} does not match this route's tool {}", spec.name),
        )
        .policy(policy::PolicyDimension::Tool));
    }
    policy::authorize(caller, spec, None).map_err(|d| ApiError::from(TicketError::from(d)))?;
    Ok(spec)
}

/// The idempotency key of a mutation and the hash of what it asks (method, path and
/// canonical body): a retry must send the same key with the same request.
fn idempotency(
    caller: &Principal,
    ctx: &RequestCtx,
    body_hash: [u8; 32],
) -> Result<(IdempotencyKey, [u8; 32]), ApiError> {
    use sha2::{Digest, Sha256};
    let key = ctx.idempotency_key.clone().ok_or_else(guard::missing_idempotency_key)?;
    let mut hasher = Sha256::new();
    hasher.update(ctx.method.as_bytes());
    hasher.update(b" ");
    hasher.update(ctx.path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body_hash);
    let key = IdempotencyKey { principal: caller.sub.clone(), route: format!("{} {}", ctx.method, ctx.route), key };
    Ok((key, hasher.finalize().into()))
}

/// Who caused an event, for the log: the caller (an agent or a person), the tool and
/// the request.
fn origin(caller: &Principal, ctx: &RequestCtx, tool: &str) -> Origin {
    Origin {
        correlation_id: ctx.correlation_id.clone(),
        trace_id: ctx.trace_id.clone(),
        ..Origin::caller(caller, tool, &ctx.request_id)
    }
}

/// A timestamp as the API writes it (RFC 3339, UTC).
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
