//! Admin-only endpoints.

use actors::policy::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::{App, authorize_route};

/// Longest lifetime an admin may give a token (one year).
/// How long a minted access token may live, in seconds (up to a year).
pub(crate) const TOKEN_TTL_SECONDS: std::ops::RangeInclusive<u64> = 1..=365 * 24 * 3600;

/// Body of `POST /v1/admin/tokens`.
#[derive(Deserialize, ToSchema)]
pub struct MintToken {
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub sub: String,
    pub role: crate::dto::accounts::Role,
    #[schema(schema_with = crate::dto::rules::non_empty_list)]
    pub accounts: Vec<String>,
    #[schema(schema_with = crate::dto::rules::non_empty_list)]
    pub sites: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::tool_names)]
    pub tools: Option<Vec<String>>,
    #[serde(default)]
    pub queues: Vec<String>,
    #[schema(schema_with = crate::dto::rules::token_ttl)]
    pub ttl_seconds: i64,
}

#[derive(Serialize, ToSchema)]
pub struct MintedToken {
    pub token: String,
    pub token_type: &'static str,
    pub jti: String,
    pub expires_at: i64,
}

#[utoipa::path(operation_id = "admin.tokens.create", post, path = "/v1/admin/tokens", tag = "admin", request_body = MintToken,
    responses((status = 201, body = MintedToken), (status = "4XX", body = ErrorBody)))]
/// Mint an access token for a user or service (admin only). The token is recorded
/// (jti, subject, expiry, who minted it) so it can be listed and revoked; no
/// Idempotency-Key: a retry mints another token.
pub(super) async fn mint_token(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<MintToken>,
) -> Result<(StatusCode, Json<MintedToken>), ApiError> {
    authorize_route(&caller, &ctx, "admin.tokens.create")?;
    let m = body.value;
    let bad = |m: &str| ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, m.to_owned());
    if m.sub.trim().is_empty() {
        return Err(bad("sub must not be empty"));
    }
    if m.accounts.is_empty() || m.sites.is_empty() {
        return Err(bad("accounts and sites must each name at least one entry (\"*\" for all)"));
    }
    if !u64::try_from(m.ttl_seconds).is_ok_and(|t| TOKEN_TTL_SECONDS.contains(&t)) {
        return Err(bad("ttl_seconds must be between 1 and 31536000"));
    }
    if let Some(unknown) = m.tools.iter().flatten().find(|t| actors::policy::tool(t).is_none()) {
        return Err(bad(&format!("unknown tool {unknown:?}")));
    }
    let principal = Principal {
        sub: m.sub,
        role: m.role.into(),
        accounts: m.accounts,
        sites: m.sites,
        tools: m.tools,
        queues: m.queues,
    };
    let (token, claims) =
        app.auth.mint(&principal, m.ttl_seconds).map_err(|e| ApiError::internal("minting a token", e))?;
    crate::api::tokens::record_minted(&app, &caller, &token, &claims).await?;
    tracing::info!(sub = %principal.sub, role = principal.role.as_str(), jti = %claims.jti, by = %caller.sub, "token minted");
    Ok((
        StatusCode::CREATED,
        Json(MintedToken { token, token_type: "Bearer", jti: claims.jti, expires_at: claims.exp }),
    ))
}
