//! Evidence file upload into the content-addressed blob store.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use actors::policy::Principal;
use actors::storage::BlobUri;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, RawBody, RequestCtx};
use super::{App, authorize_route};

#[derive(Serialize, ToSchema)]
pub struct StoredBlob {
    /// `blob:sha256:<hex>`, to use as an evidence `uri`.
    pub uri: String,
    pub size: usize,
}

#[utoipa::path(operation_id = "blob.upload", post, path = "/v1/blobs", tag = "evidence",
    request_body(content = crate::dto::rules::Binary, content_type = "application/octet-stream"),
    responses((status = 201, body = StoredBlob), (status = "4XX", body = ErrorBody)))]
/// Store an evidence file; the answer's URI names its SHA-256. Uploads are
/// idempotent by content (the same bytes give the same URI), so no
/// Idempotency-Key is needed.
pub(super) async fn upload(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    RawBody(bytes): RawBody,
) -> Result<(StatusCode, Json<StoredBlob>), ApiError> {
    authorize_route(&caller, &ctx, "blob.upload")?;
    if bytes.is_empty() {
        return Err(ApiError::validation(StatusCode::BAD_REQUEST, "the body is empty"));
    }
    let size = bytes.len();
    let blobs = app.blobs.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let uri = BlobUri::of(&bytes);
        (blobs.resolves(&uri.to_string()), uri, bytes)
    });
    let (present, uri, bytes) = stored.await.map_err(|e| ApiError::internal("hashing the blob", e))?;
    if !present {
        store_charged(&app, &caller, bytes).await?;
    }
    Ok((StatusCode::CREATED, Json(StoredBlob { uri: uri.to_string(), size })))
}

/// Bytes each uploader has stored: uploader → u64 (LE).
const USAGE_INDEX: &str = "blob_usage";

/// Stores a new blob and charges it to the uploader, refusing it past the quota.
async fn store_charged(app: &App, caller: &Principal, bytes: axum::body::Bytes) -> Result<(), ApiError> {
    let _one_at_a_time = app.blob_quota.lock().await;
    let read_usage = app.log.index_get(USAGE_INDEX, &caller.sub).map_err(|e| ApiError::internal("blob usage", e))?;
    let used = read_usage.and_then(|v| v.get(..8)?.try_into().ok()).map_or(0, u64::from_le_bytes);
    let size = bytes.len() as u64;
    if used.saturating_add(size) > app.edge.blob_quota_bytes {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "QUOTA_EXCEEDED",
            format!(
                "{} has stored {used} bytes of evidence; {size} more would pass the quota of {}",
                caller.sub, app.edge.blob_quota_bytes
            ),
        ));
    }
    let blobs = app.blobs.clone();
    let (_, new) = tokio::task::spawn_blocking(move || blobs.put(&bytes))
        .await
        .map_err(|e| ApiError::internal("storing the blob", e))?
        .map_err(|e| ApiError::unavailable(format!("storing the blob: {e}")))?;
    if new {
        let payload = serde_json::json!({ "bytes": size, "total": used + size }).to_string().into_bytes();
        let usage = (used + size).to_le_bytes().to_vec();
        crate::api::identity::append_to(app, &format!("blob-usage/{}", caller.sub), || {
            let event = crate::api::identity::event(app, caller, "blob.upload", "blob.stored", payload.clone());
            let op = actors::storage::IndexOp::Put {
                index: USAGE_INDEX.into(),
                key: caller.sub.clone(),
                value: usage.clone(),
            };
            (vec![event], vec![op])
        })
        .await?;
    }
    Ok(())
}
