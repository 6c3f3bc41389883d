//! Admin control over access: minted tokens, login sessions, signing key retirement.

use super::extract::{Path, Query};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::paging::Page;
use super::{App, authorize_route};
use crate::api::tokens::{self, MintedRecord, SessionView};

/// A page of minted tokens.
#[derive(Serialize, ToSchema)]
pub struct MintedList {
    pub tokens: Vec<MintedRecord>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(operation_id = "admin.tokens.list", get, path = "/v1/admin/tokens", tag = "admin", params(Page),
    responses((status = 200, body = MintedList), (status = "4XX", body = ErrorBody)))]
/// Tokens minted by admins or for service accounts: who, for whom, until when, revoked or not.
pub(super) async fn list_tokens(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Query(page): Query<Page>,
) -> Result<Json<MintedList>, ApiError> {
    authorize_route(&caller, &ctx, "admin.tokens.list")?;
    let tokens = tokens::list_minted(&app, page.cursor.as_deref(), page.limit())?;
    let next_cursor = page.next_after(&tokens, |t| t.jti.clone());
    Ok(Json(MintedList { tokens, next_cursor }))
}

#[utoipa::path(operation_id = "admin.tokens.revoke", post, path = "/v1/admin/tokens/{jti}/revoke", tag = "admin", params(("jti" = String, Path)),
    responses((status = 200, body = MintedRecord), (status = "4XX", body = ErrorBody)))]
/// Revoke a minted token: it stops working at once.
pub(super) async fn revoke_token(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(jti): Path<String>,
) -> Result<Json<MintedRecord>, ApiError> {
    authorize_route(&caller, &ctx, "admin.tokens.revoke")?;
    Ok(Json(tokens::revoke_minted(&app, &caller, &jti).await?))
}

/// A page of a user's login sessions.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(operation_id = "user.sessions.list", get, path = "/v1/users/{username}/sessions", tag = "users", params(("username" = String, Path), Page),
    responses((status = 200, body = SessionList), (status = "4XX", body = ErrorBody)))]
/// A user's login sessions.
pub(super) async fn list_sessions(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(username): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<SessionList>, ApiError> {
    authorize_route(&caller, &ctx, "user.sessions.list")?;
    let sessions = tokens::list_sessions(&app, &username, page.cursor.as_deref(), page.limit())?;
    let next_cursor = page.next_after(&sessions, |s| s.id.clone());
    Ok(Json(SessionList { sessions, next_cursor }))
}

/// Body of `POST /v1/users/{username}/sessions/revoke`.
#[derive(Deserialize, ToSchema)]
pub struct RevokeSessions {
    /// The session to end; without it, every session of the user ends.
    #[serde(default)]
    pub session_id: Option<String>,
}

/// The sessions a revocation ended.
#[derive(Serialize, ToSchema)]
pub struct RevokedSessions {
    pub revoked: Vec<String>,
}

#[utoipa::path(operation_id = "user.sessions.revoke", post, path = "/v1/users/{username}/sessions/revoke", tag = "users", params(("username" = String, Path)),
    request_body = RevokeSessions, responses((status = 200, body = RevokedSessions), (status = "4XX", body = ErrorBody)))]
/// End one or all of a user's login sessions (refresh and access tokens alike).
pub(super) async fn revoke_sessions(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(username): Path<String>,
    body: JsonBody<RevokeSessions>,
) -> Result<Json<RevokedSessions>, ApiError> {
    authorize_route(&caller, &ctx, "user.sessions.revoke")?;
    let revoked = tokens::revoke_sessions(&app, &caller, &username, body.value.session_id.as_deref()).await?;
    Ok(Json(RevokedSessions { revoked }))
}

/// Options of `POST /v1/admin/signing-keys/{kid}/retire`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Retire {
    /// Retire even though tokens it signed may still be live (they stop working).
    #[serde(default)]
    pub force: bool,
}

/// A retired key.
#[derive(Serialize, ToSchema)]
pub struct RetiredKey {
    pub kid: String,
    pub retired: bool,
}

#[utoipa::path(operation_id = "admin.signing_keys.retire", post, path = "/v1/admin/signing-keys/{kid}/retire", tag = "admin", params(("kid" = String, Path), Retire),
    responses((status = 200, body = RetiredKey), (status = "4XX", body = ErrorBody)))]
/// Retire a signing key: tokens it signed verify no more. Refused (409) while some may
/// still be live, unless `force`; the current key is never retired (rotate first).
pub(super) async fn retire_signing_key(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(kid): Path<String>,
    Query(retire): Query<Retire>,
) -> Result<Json<RetiredKey>, ApiError> {
    authorize_route(&caller, &ctx, "admin.signing_keys.retire")?;
    tokens::retire_key(&app, &caller, &kid, retire.force).await?;
    Ok(Json(RetiredKey { kid, retired: true }))
}
