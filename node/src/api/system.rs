//! Liveness, readiness and metrics, for supervisors and Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::App;

/// The process is up.
pub(super) async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve: storage readable and the log writer running; otherwise 503 with reasons.
pub(super) async fn ready(State(app): State<App>) -> impl IntoResponse {
    let mut reasons = Vec::new();
    if let Err(e) = app.log.global_len() {
        reasons.push(format!("storage unreadable: {e}"));
    }
    if !app.writer.is_running() {
        reasons.push("log writer stopped".to_owned());
    }
    if let Some(fault) = app.log.fault() {
        reasons.push(format!("storage: {fault}"));
    }
    if app.inference.required && app.inference.provider.is_none() {
        let nodes = app.cluster.membership.nodes().await.unwrap_or_default();
        let local =
            nodes.iter().any(|v| v.node.state == actors::node::NodeState::Active && v.node.capabilities.inference);
        if !local {
            reasons.push(
                "inference is required: no active node reports a local inference runtime and no external provider is configured (--inference-provider)"
                    .to_owned(),
            );
        }
    }
    let status = if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": reasons.is_empty(), "reasons": reasons })))
}

/// Prometheus text exposition.
pub(super) async fn metrics(State(app): State<App>) -> impl IntoResponse {
    if let Some(free) = app.free_space.bytes() {
        metrics::gauge!("dispatch_data_dir_free_bytes").set(free as f64);
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}
