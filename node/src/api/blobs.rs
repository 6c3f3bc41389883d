//! Evidence file upload into the content-addressed blob store.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, RawBody, RequestCtx};
use super::{App, authorize_route};

#[derive(Serialize, ToSchema)]
pub struct StoredBlob {
    /// `blob:sha256:<hex>`, to use as an evidence `uri`.
    pub uri: String,
    pub size: usize,
}

#[utoipa::path(post, path = "/v1/blobs", tag = "evidence",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
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
    let uri = tokio::task::spawn_blocking(move || blobs.put(&bytes))
        .await
        .map_err(|e| ApiError::internal("storing the blob", e))?
        .map_err(|e| ApiError::internal("storing the blob", e))?;
    Ok((StatusCode::CREATED, Json(StoredBlob { uri: uri.to_string(), size })))
}
