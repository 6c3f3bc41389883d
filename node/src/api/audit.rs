//! `GET /v1/admin/audit/verify` and `dispatch audit verify`: re-compute every hash chain
//! of the log and check the global order, naming the first break of each stream.

use actors::storage::{Log, StorageError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Query, RequestCtx};
use super::{App, authorize_route};

/// Most breaks one report lists (a damaged file could hold one per stream).
const MAX_BREAKS: usize = 100;
/// Longest stream name the query takes.
const MAX_STREAM: usize = 256;

/// What a verification found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditReport {
    /// No break anywhere checked.
    pub ok: bool,
    /// What was checked: `all`, or the one stream asked for.
    pub checked: String,
    /// Events in the log (its global position).
    pub events: u64,
    /// The first break of each broken stream (at most 100), in stream order.
    pub breaks: Vec<ChainBreak>,
}

/// A broken link: where, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainBreak {
    pub stream: String,
    pub seq: u64,
    pub reason: String,
}

/// Verifies `stream`, or the whole log with its global order. Reads only.
pub fn report(log: &Log, stream: Option<&str>) -> Result<AuditReport, StorageError> {
    let breaks = match stream {
        Some(s) => log.verify_stream(s)?.into_iter().collect(),
        None => log.verify_all()?,
    };
    let breaks: Vec<ChainBreak> = breaks
        .into_iter()
        .take(MAX_BREAKS)
        .map(|b| ChainBreak { stream: b.stream, seq: b.seq, reason: b.reason })
        .collect();
    Ok(AuditReport {
        ok: breaks.is_empty(),
        checked: stream.unwrap_or("all").to_owned(),
        events: log.global_len()?,
        breaks,
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Only this stream, e.g. `ticket/<id>` (default: every stream and the global order).
    #[param(max_length = 256)]
    pub stream: Option<String>,
}

#[utoipa::path(operation_id = "admin.audit.verify", get, path = "/v1/admin/audit/verify", tag = "admin", params(VerifyQuery),
    responses((status = 200, body = AuditReport), (status = "4XX", body = ErrorBody)))]
/// Re-computes every hash chain (or one stream's) and checks the global order. A report
/// with breaks is still 200: the check ran; `ok` says what it found.
pub(super) async fn verify(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Query(q): Query<VerifyQuery>,
) -> Result<Json<AuditReport>, ApiError> {
    authorize_route(&caller, &ctx, "admin.audit.verify")?;
    if let Some(stream) = &q.stream {
        if stream.is_empty() || stream.len() > MAX_STREAM {
            return Err(ApiError::validation(StatusCode::BAD_REQUEST, "stream must be 1-256 bytes"));
        }
        let (seq, _) = app.log.stream_head(stream).map_err(|e| ApiError::internal("reading the log", e))?;
        if seq == 0 {
            return Err(ApiError::not_found("stream"));
        }
    }
    let log = app.log.clone();
    let checked = tokio::task::spawn_blocking(move || report(&log, q.stream.as_deref()))
        .await
        .map_err(|e| ApiError::internal("verifying the log", e))?;
    checked.map(Json).map_err(|e| ApiError::internal("verifying the log", e))
}

/// Chunks of a backup in flight to the client; past this the copy waits for the client.
const BACKUP_CHUNKS: usize = 8;
const BACKUP_CHUNK_BYTES: usize = 256 * 1024;

#[utoipa::path(operation_id = "admin.backup", get, path = "/v1/admin/backup", tag = "admin",
    responses((status = 200, description = "A backup archive, a tar file: manifest.json, dispatch.redb, ca/, blobs/", content_type = "application/octet-stream", body = crate::dto::rules::Binary),
        (status = "4XX", body = ErrorBody)))]
/// A consistent backup of the running orchestrator, streamed as it is written (`dispatch
/// backup FILE` keeps it). A failure midway ends the body early, which the client sees.
pub(super) async fn backup(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
) -> Result<axum::response::Response, ApiError> {
    authorize_route(&caller, &ctx, "admin.backup")?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(BACKUP_CHUNKS);
    let log = app.log.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(BACKUP_CHUNK_BYTES, ChannelWriter(tx.clone()));
        if let Err(e) = crate::backup::write_archive(&log, &mut out) {
            tracing::warn!(error = %format!("{e:#}"), "backup failed");
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|chunk| (chunk, rx)) });
    axum::response::Response::builder()
        .header("content-type", "application/octet-stream")
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| ApiError::internal("building the response", e))
}

/// Sends what is written to the response body; fails once the client has gone.
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(axum::body::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
