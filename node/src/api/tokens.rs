//! What an admin can see and end: tokens minted by `/v1/admin/tokens` and for
//! service accounts (each recorded with who minted it), a user's login sessions,
//! and signing keys (retired once no token they signed can still be live).

use actors::policy::Principal;
use actors::session::{self, MINTED_TOKENS_INDEX, RevokedKind, USER_SESSIONS_INDEX};
use actors::storage::IndexOp;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::AppInner;
use crate::api::error::ApiError;
use crate::api::identity::{ACCESS_TTL_SECONDS, SERVICE_TOKEN_TTL_SECONDS, append_to, event, principal_of};
use crate::auth::{Claims, RETIRED_KEYS_INDEX, SUPERSEDED_KEYS_INDEX};
use crate::clock::now_ms;

/// Records read per page while looking for a key's live tokens.
const SCAN_PAGE: usize = 200;

/// A token minted by an admin or for a service account, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MintedRecord {
    pub jti: String,
    pub sub: String,
    pub role: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub minted_by: String,
    pub minted_at_ms: i64,
    /// The signing key's id.
    pub kid: String,
    #[serde(default)]
    pub revoked: bool,
}

/// A login session as an admin sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub username: String,
    pub expires_ms: i64,
    pub revoked: bool,
}

fn storage_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("reading tokens and sessions", e)
}

/// Records a token minted by `by` (durably, before the token is handed out).
pub async fn record_minted(app: &AppInner, by: &Principal, token: &str, claims: &Claims) -> Result<(), ApiError> {
    let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid).unwrap_or_default();
    let record = MintedRecord {
        jti: claims.jti.clone(),
        sub: claims.sub.clone(),
        role: claims.role.as_str().into(),
        expires_at: claims.exp,
        minted_by: by.sub.clone(),
        minted_at_ms: now_ms(),
        kid,
        revoked: false,
    };
    let body = serde_json::to_vec(&record).map_err(storage_err)?;
    append_to(app, "auth/minted-tokens", || {
        let put = IndexOp::Put { index: MINTED_TOKENS_INDEX.into(), key: record.jti.clone(), value: body.clone() };
        (vec![event(app, by, "admin.tokens.create", "token.minted", body.clone())], vec![put])
    })
    .await
}

fn minted(bytes: &[u8]) -> Option<MintedRecord> {
    serde_json::from_slice(bytes).ok()
}

/// A page of at most `limit` minted tokens in jti order, after `cursor`.
pub fn list_minted(app: &AppInner, cursor: Option<&str>, limit: usize) -> Result<Vec<MintedRecord>, ApiError> {
    let page = app.log.index_page(MINTED_TOKENS_INDEX, "", cursor, limit).map_err(storage_err)?;
    Ok(page
        .iter()
        .filter_map(|(_, v)| minted(v))
        .map(|r| MintedRecord { revoked: app.auth.jti_revoked(&r.jti), ..r })
        .collect())
}

/// Revokes a minted token; its record stays, marked revoked.
pub async fn revoke_minted(app: &AppInner, by: &Principal, jti: &str) -> Result<MintedRecord, ApiError> {
    let found = app.log.index_get(MINTED_TOKENS_INDEX, jti).map_err(storage_err)?.and_then(|v| minted(&v));
    let record = found.ok_or_else(|| ApiError::not_found("minted token"))?;
    let payload = serde_json::json!({ "jti": jti }).to_string().into_bytes();
    append_to(app, "auth/minted-tokens", || {
        let op = session::revocation(RevokedKind::Jti, jti, record.expires_at);
        (vec![event(app, by, "admin.tokens.revoke", "token.revoked", payload.clone())], vec![op])
    })
    .await?;
    app.auth.revoke(RevokedKind::Jti, jti, record.expires_at);
    Ok(MintedRecord { revoked: true, ..record })
}

/// A page of at most `limit` of `username`'s login sessions, after the session id `cursor`.
pub fn list_sessions(
    app: &AppInner,
    username: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Vec<SessionView>, ApiError> {
    let prefix = session::user_session_key(username, "");
    let after = cursor.map(|c| session::user_session_key(username, c));
    let page = app.log.index_page(USER_SESSIONS_INDEX, &prefix, after.as_deref(), limit).map_err(storage_err)?;
    let mut out = Vec::with_capacity(page.len());
    for (_, sid) in page {
        let Ok(sid) = String::from_utf8(sid) else { continue };
        let Some(s) = session::load(&app.log, &sid).map_err(storage_err)? else { continue };
        let revoked = s.revoked.is_some() || app.auth.session_revoked(&sid);
        out.push(SessionView { id: sid, username: s.username, expires_ms: s.expires_ms, revoked });
    }
    Ok(out)
}

/// Ends one of `username`'s sessions, or all of them: their refresh tokens stop
/// working and so do the access tokens they issued. Answers the sessions ended.
pub async fn revoke_sessions(
    app: &AppInner,
    by: &Principal,
    username: &str,
    only: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let all = crate::api::identity::session_ids(app, username)?;
    let ended: Vec<String> = match only {
        Some(sid) if all.iter().any(|s| s == sid) => vec![sid.to_owned()],
        Some(_) => return Err(ApiError::not_found("session")),
        None => all,
    };
    let payload = serde_json::json!({ "username": username, "sessions": ended }).to_string().into_bytes();
    let at = now_ms();
    append_to(app, "auth/session-revocations", || {
        let ops = ended.iter().map(|sid| session::revocation(RevokedKind::Session, sid, at)).collect();
        (vec![event(app, by, "user.sessions.revoke", "sessions.revoked", payload.clone())], ops)
    })
    .await?;
    for sid in &ended {
        app.auth.revoke(RevokedKind::Session, sid, at);
    }
    Ok(ended)
}

/// Records that `kid` stopped signing now (called with the rotation that replaced it).
pub fn superseded(kid: &str) -> IndexOp {
    IndexOp::Put { index: SUPERSEDED_KEYS_INDEX.into(), key: kid.into(), value: now_ms().to_le_bytes().to_vec() }
}

/// Why a key may still have live tokens, if it may.
fn live_tokens_of(app: &AppInner, kid: &str, now_ms: i64) -> Result<Option<String>, ApiError> {
    if app.auth.current_kid() == kid {
        return Ok(Some("it is the current signing key; rotate first".into()));
    }
    let stamp = |v: Vec<u8>| v.get(..8).and_then(|b| b.try_into().ok()).map_or(i64::MAX, i64::from_le_bytes);
    let superseded_ms = app.log.index_get(SUPERSEDED_KEYS_INDEX, kid).map_err(storage_err)?.map_or(i64::MAX, stamp);
    if superseded_ms.saturating_add(ACCESS_TTL_SECONDS * 1000) > now_ms {
        return Ok(Some("access tokens from logins it signed may still be live".into()));
    }
    let mut cursor: Option<String> = None;
    loop {
        let page = list_minted(app, cursor.as_deref(), SCAN_PAGE)?;
        if let Some(r) = page.iter().find(|r| r.kid == kid && !r.revoked && r.expires_at * 1000 > now_ms) {
            return Ok(Some(format!("minted token {} for {} is live until {}", r.jti, r.sub, r.expires_at)));
        }
        match page.last() {
            Some(last) if page.len() == SCAN_PAGE => cursor = Some(last.jti.clone()),
            _ => return Ok(None),
        }
    }
}

/// Retires `kid`: tokens it signed verify no more. Refused while some may still be
/// live, unless `force`.
pub async fn retire_key(app: &AppInner, by: &Principal, kid: &str, force: bool) -> Result<(), ApiError> {
    if !app.auth.has_key(kid) {
        return Err(ApiError::not_found("signing key"));
    }
    if let Some(why) = live_tokens_of(app, kid, now_ms())?
        && (!force || app.auth.current_kid() == kid)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "SIGNING_KEY_IN_USE",
            format!("key {kid} cannot be retired: {why}"),
        ));
    }
    let payload = serde_json::json!({ "kid": kid, "force": force }).to_string().into_bytes();
    append_to(app, "auth/signing-keys", || {
        let op =
            IndexOp::Put { index: RETIRED_KEYS_INDEX.into(), key: kid.into(), value: now_ms().to_le_bytes().to_vec() };
        (vec![event(app, by, "admin.signing_keys.retire", "signing_key.retired", payload.clone())], vec![op])
    })
    .await?;
    app.auth.retire(kid).map_err(|e| ApiError::internal("retiring a key", e))?;
    tracing::warn!(kid, by = %by.sub, force, "signing key retired");
    Ok(())
}

/// A service account's long-lived token (its `tools` claim narrows what it may call),
/// recorded like an admin's mint so it can be listed and revoked.
pub async fn service_token(app: &AppInner, by: &Principal, u: &actors::user::User) -> Result<String, ApiError> {
    let (token, claims) =
        app.auth.mint(&principal_of(u), SERVICE_TOKEN_TTL_SECONDS).map_err(|e| ApiError::internal("minting", e))?;
    record_minted(app, by, &token, &claims).await?;
    Ok(token)
}
