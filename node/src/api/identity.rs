//! Accounts and sign-in: argon2id passwords, login sessions with rotating refresh
//! tokens, revocation, and login rate limits. The rules live in `actors::user` and
//! `actors::session`; this module hashes, writes them to the log and keeps the
//! in-memory revocation set in step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actors::kernel::{self, Origin, Request};
use actors::policy::Principal;
use actors::session::{self, RevokedKind, SessionCommand, SessionRefusal, Sessions};
use actors::storage::{Append, AppendError, IndexOp, NewEvent};
use actors::user::{self, User, UserCommand, UserError, Users};
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::StatusCode;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::api::AppInner;
use crate::api::error::ApiError;

/// Lifetime of an access token from a login.
pub const ACCESS_TTL_SECONDS: i64 = 15 * 60;
/// Lifetime of a login session's refresh tokens.
pub const REFRESH_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Lifetime of a service account's token.
pub const SERVICE_TOKEN_TTL_SECONDS: i64 = 365 * 24 * 3600;

/// What login and refresh answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
}

/// Hashes a password with argon2id and a fresh salt (slow on purpose: call off the runtime).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal("hashing a password", e))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Checks a password against a hash on a blocking thread.
async fn verify_password_blocking(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&hash, &password)).await.unwrap_or(false)
}

/// A hash of 32 random bytes nobody kept, with `Argon2::default()`'s parameters: verified
/// when the user does not exist, so a failed login takes as long for a missing user as for
/// a wrong password (a missing user never logs in, whatever matches it).
///
/// A constant, not computed at start-up: the background thread that used to compute it
/// woke the orchestrator's runtime at a moment of its own, which made one simulation seed
/// give two histories (seeds 271 and 551 of `the_same_seed_gives_the_same_trace`).
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$IJdw4pDGZHcCA2aYgfze5A$IxIDG1F3okM9dK4RLEYa3rSwDPzIJkXjWI4NeMjgNo4";

/// Fixed-window counters keyed by username or client address.
pub struct Limiter {
    max: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// At most `max` counted events per `window` per key.
    pub fn new(max: u32, window: Duration) -> Limiter {
        Limiter { max, window, counts: Mutex::new(HashMap::new()) }
    }

    /// Counts one event against `key`, in the same step as the check: `Err(retry_after)`
    /// (and nothing counted) while `key` is over its budget. Parallel attempts each
    /// take a slot before any of them is judged, so none slips past the budget.
    pub fn try_hit(&self, key: &str) -> Result<(), Duration> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| start.elapsed() < self.window);
        }
        let entry = counts.entry(key.to_owned()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        if entry.1 >= self.max {
            return Err(self.window.saturating_sub(entry.0.elapsed()));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Forgets `key` (after a successful login).
    pub fn clear(&self, key: &str) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Login rate limits: failures per username, attempts per client address.
pub struct LoginLimits {
    pub per_user: Limiter,
    pub per_client: Limiter,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_user: Limiter::new(5, Duration::from_secs(300)),
            per_client: Limiter::new(30, Duration::from_secs(60)),
        }
    }
}

/// An audit event caused by `actor` through `tool`, for the node's own streams
/// (minted tokens, blob usage, signing keys), stamped by the kernel's clock and ids.
pub(crate) fn event(app: &AppInner, actor: &Principal, tool: &str, kind: &str, payload: Vec<u8>) -> NewEvent {
    let request_id = crate::api::error::REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
    let at = (app.kernel.ids.next_id(), app.kernel.clock.now_ms());
    Origin::caller(actor, tool, &request_id).event_bytes(at, kind, (None, None), payload)
}

/// Appends what `build` makes to `stream` (one the node keeps outside the entity
/// actors: token records, revocations, blob usage), retrying when another writer got
/// there first.
pub(crate) async fn append_to(
    app: &AppInner,
    stream: &str,
    build: impl Fn() -> (Vec<NewEvent>, Vec<IndexOp>),
) -> Result<(), ApiError> {
    for _ in 0..5 {
        let expected_seq = app.log.stream_head(stream).map_err(storage_err)?.0;
        let (events, index_ops) = build();
        let append = Append { stream: stream.into(), expected_seq, events, index_ops, ..Default::default() };
        match app.writer.append(append).await {
            Ok(_) => return Ok(()),
            Err(AppendError::SequenceConflict { .. }) => continue,
            Err(e) => return Err(ApiError::unavailable(e.to_string())),
        }
    }
    Err(ApiError::unavailable(format!("{stream} kept changing; retry")))
}

fn storage_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("reading accounts", e)
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "USER_NOT_FOUND", "user not found"),
            UserError::AlreadyExists => {
                ApiError::new(StatusCode::CONFLICT, "USER_EXISTS", "a user with this name exists")
            }
            UserError::Invalid(m) => ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, m),
            UserError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "USER_STATE_CONFLICT", m),
        }
    }
}

impl From<SessionRefusal> for ApiError {
    fn from(e: SessionRefusal) -> Self {
        refresh_refused(&e.to_string())
    }
}

/// The audit origin of a change `actor` makes through `tool`, tied to the request.
fn origin_of(actor: &Principal, tool: &str) -> Origin {
    Origin::caller(actor, tool, &crate::api::error::REQUEST_ID.try_with(Clone::clone).unwrap_or_default())
}

/// Runs an account command by `actor` through the kernel, with the revocations it
/// implies (disable, new role or password: older tokens of that user stop working).
pub async fn user_command(
    app: &AppInner,
    actor: &Principal,
    username: &str,
    command: UserCommand,
) -> Result<User, ApiError> {
    let demotes = matches!(command, UserCommand::Disable)
        || matches!(command, UserCommand::SetRole(role) if role != actors::policy::Role::Admin);
    let _serial = if demotes { Some(app.admin_changes.lock().await) } else { None };
    if demotes {
        refuse_last_admin(app, username)?;
    }
    let now = app.kernel.clock.now_ms();
    let revoke_before = match &command {
        UserCommand::Disable => Some(i64::MAX),
        UserCommand::SetRole(_) | UserCommand::ResetPassword(_) => Some(now),
        UserCommand::Create { .. } => None,
    };
    // Every login session ends too: a refresh token taken before the change must
    // not mint new access tokens after it.
    let mut index_ops = Vec::new();
    let mut sessions = Vec::new();
    if let Some(at) = revoke_before {
        index_ops.push(session::revocation(RevokedKind::Subject, username, at));
        sessions = session_ids(app, username)?;
        index_ops.extend(sessions.iter().map(|sid| session::revocation(RevokedKind::Session, sid, now)));
    }
    let origin = origin_of(actor, "user.admin");
    let request = Request { index_ops, ..Request::<Users>::new(username.to_owned(), command, origin) };
    let user = kernel::run_once(&app.kernel, &(), &request).await?.state;
    if let Some(at) = revoke_before {
        app.auth.revoke(RevokedKind::Subject, username, at);
    }
    for sid in &sessions {
        app.auth.revoke(RevokedKind::Session, sid, now);
    }
    Ok(user)
}

/// Refuses (409 `LAST_ADMIN`) to disable or demote `username` when it is the only
/// enabled admin left: nobody could then manage accounts, keys or nodes.
fn refuse_last_admin(app: &AppInner, username: &str) -> Result<(), ApiError> {
    let users = actors::user::list(&app.log).map_err(storage_err)?;
    let admin = |u: &&User| u.account.role == actors::policy::Role::Admin && !u.disabled;
    let admins: Vec<&str> = users.iter().filter(admin).map(|u| u.account.username.as_str()).collect();
    if admins == [username] {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "LAST_ADMIN",
            format!("{username} is the last enabled admin; make another admin first"),
        ));
    }
    Ok(())
}

/// The ids of every login session `username` ever started.
pub(crate) fn session_ids(app: &AppInner, username: &str) -> Result<Vec<String>, ApiError> {
    let prefix = session::user_session_key(username, "");
    let entries = app.log.index_scan(session::USER_SESSIONS_INDEX, &prefix, usize::MAX).map_err(storage_err)?;
    Ok(entries.into_iter().filter_map(|(_, v)| String::from_utf8(v).ok()).collect())
}

pub(crate) fn principal_of(u: &User) -> Principal {
    let a = &u.account;
    Principal {
        sub: a.username.clone(),
        role: a.role,
        accounts: a.accounts.clone(),
        sites: a.sites.clone(),
        tools: a.tools.clone(),
        queues: a.queues.clone(),
    }
}

fn invalid_login() -> ApiError {
    ApiError::unauthorized("invalid username or password")
}

fn rate_limited(retry_after: Duration) -> ApiError {
    metrics::counter!("dispatch_auth_logins_total", "outcome" => "rate_limited").increment(1);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many login attempts; try again later")
        .details(serde_json::json!({ "retry_after_seconds": retry_after.as_secs().max(1) }))
}

/// Checks a password and starts a login session.
pub async fn login(app: &AppInner, username: &str, password: &str, client: &str) -> Result<TokenPair, ApiError> {
    app.login_limits.per_client.try_hit(client).map_err(rate_limited)?;
    // Counted as a failure before the password is checked; a success clears it.
    app.login_limits.per_user.try_hit(username).map_err(rate_limited)?;
    let found = user::load(&app.log, username).map_err(storage_err)?;
    let usable = found.filter(|u| !u.disabled && u.password_hash.is_some());
    // Always verify a hash, real or decoy, so timing does not tell who exists.
    let hash = match usable.as_ref().and_then(|u| u.password_hash.clone()) {
        Some(hash) => hash,
        None => DECOY_HASH.to_owned(),
    };
    let ok = verify_password_blocking(hash, password.to_owned()).await && usable.is_some();
    let Some(user) = usable.filter(|_| ok) else {
        metrics::counter!("dispatch_auth_logins_total", "outcome" => "failure").increment(1);
        tracing::warn!(username, client, "login failed");
        return Err(invalid_login());
    };
    app.login_limits.per_user.clear(username);
    let sid = app.kernel.ids.next_id().to_string();
    let (refresh, hash) = new_refresh_token();
    let command = SessionCommand::Start {
        username: user.account.username.clone(),
        token_hash: hash,
        expires_ms: app.kernel.clock.now_ms() + REFRESH_TTL_SECONDS * 1000,
    };
    let principal = principal_of(&user);
    let request = Request::<Sessions>::new(sid.clone(), command, origin_of(&principal, "auth.login"));
    kernel::run_once(&app.kernel, &(), &request).await?;
    metrics::counter!("dispatch_auth_logins_total", "outcome" => "success").increment(1);
    tracing::info!(username, session = %sid, "login");
    access_pair(app, &principal, sid, refresh)
}

fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

fn access_pair(
    app: &AppInner,
    principal: &Principal,
    sid: String,
    refresh_token: String,
) -> Result<TokenPair, ApiError> {
    let claims = crate::auth::Claims::for_principal(principal, ACCESS_TTL_SECONDS, Some(sid));
    let access_token = app.auth.sign(&claims).map_err(|e| ApiError::internal("minting", e))?;
    Ok(TokenPair { access_token, token_type: "Bearer", expires_in: ACCESS_TTL_SECONDS, refresh_token })
}

fn refresh_refused(message: &str) -> ApiError {
    metrics::counter!("dispatch_auth_refresh_total", "outcome" => "refused").increment(1);
    ApiError::unauthorized(message.to_owned())
}

/// Trades a refresh token for a new pair; a reused one revokes its whole session.
pub async fn refresh(app: &AppInner, refresh_token: &str) -> Result<TokenPair, ApiError> {
    let presented = hex::encode(Sha256::digest(refresh_token.as_bytes()));
    let sid = app
        .log
        .index_get(session::REFRESH_INDEX, &presented)
        .map_err(storage_err)?
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| refresh_refused("unknown refresh token"))?;
    let s = session::load(&app.log, &sid).map_err(storage_err)?;
    let s = s.ok_or_else(|| refresh_refused("unknown refresh token"))?;
    if app.auth.session_revoked(&sid) {
        return Err(refresh_refused("the session was ended (logout, password reset, role change or revocation)"));
    }
    let user = user::load(&app.log, &s.username).map_err(storage_err)?.filter(|u| !u.disabled);
    let Some(user) = user else { return Err(refresh_refused("the account is disabled")) };
    let principal = principal_of(&user);
    let (token, new_hash) = new_refresh_token();
    let expires_ms = app.kernel.clock.now_ms() + REFRESH_TTL_SECONDS * 1000;
    let command = SessionCommand::Refresh { presented_hash: presented, new_hash, expires_ms };
    // Two refreshes racing are serialized by the kernel's sequence check: the loser
    // decides again on the rotated session and is seen as a reuse.
    let request = Request::<Sessions>::new(sid.clone(), command, origin_of(&principal, "auth.refresh"));
    let session = kernel::run_once(&app.kernel, &(), &request).await?.state;
    if session.revoked.as_deref() == Some(session::REUSED) {
        metrics::counter!("dispatch_auth_refresh_total", "outcome" => "reuse_detected").increment(1);
        app.auth.revoke(RevokedKind::Session, &sid, app.kernel.clock.now_ms());
        tracing::warn!(session = %sid, username = %s.username, "refresh token reused: session revoked");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "REFRESH_TOKEN_REUSED",
            "this refresh token was already used; the session is revoked",
        ));
    }
    metrics::counter!("dispatch_auth_refresh_total", "outcome" => "rotated").increment(1);
    access_pair(app, &principal, sid, token)
}

/// Ends a session (found by the access token's `sid` or by a refresh token) and
/// revokes the presented access token.
pub async fn logout(
    app: &AppInner,
    access: Option<&crate::auth::Claims>,
    refresh_token: Option<&str>,
) -> Result<(), ApiError> {
    let mut sid = access.and_then(|c| c.sid.clone());
    if sid.is_none()
        && let Some(token) = refresh_token
    {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        sid = app
            .log
            .index_get(session::REFRESH_INDEX, &hash)
            .map_err(storage_err)?
            .and_then(|v| String::from_utf8(v).ok());
    }
    if sid.is_none() && access.is_none() {
        return Err(ApiError::unauthorized("give a bearer token or a refresh token to log out"));
    }
    let now = app.kernel.clock.now_ms();
    let jti = access.map(|c| session::revocation(RevokedKind::Jti, &c.jti, c.exp));
    let actor = Principal {
        sub: access.map_or("anonymous".into(), |c| c.sub.clone()),
        role: access.map_or(actors::policy::Role::Agent, |c| c.role),
        accounts: vec![],
        sites: vec![],
        tools: None,
        queues: vec![],
    };
    let known = match &sid {
        Some(sid) => session::load(&app.log, sid).map_err(storage_err)?.map(|_| sid.clone()),
        None => None,
    };
    match known {
        // The session's revocation entry comes with its event (the entity's index ops).
        Some(sid) => {
            let command = SessionCommand::Revoke { reason: "logout".into() };
            let origin = origin_of(&actor, "auth.logout");
            let request =
                Request { index_ops: jti.into_iter().collect(), ..Request::<Sessions>::new(sid, command, origin) };
            kernel::run_once(&app.kernel, &(), &request).await?;
        }
        None => {
            let mut ops: Vec<IndexOp> = jti.into_iter().collect();
            ops.extend(sid.iter().map(|sid| session::revocation(RevokedKind::Session, sid, now)));
            append_to(app, "auth/logouts", || (Vec::new(), ops.clone())).await?;
        }
    }
    if let Some(c) = access {
        app.auth.revoke(RevokedKind::Jti, &c.jti, c.exp);
    }
    if let Some(sid) = &sid {
        app.auth.revoke(RevokedKind::Session, sid, now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoy_costs_what_a_real_hash_costs_and_matches_nothing() {
        let real = hash_password("a password").unwrap();
        let params = |h: &str| PasswordHash::new(h).unwrap().params.to_string();
        // An argon2 upgrade with new defaults would make missing users answer faster or slower.
        assert_eq!(params(DECOY_HASH), params(&real), "regenerate DECOY_HASH with today's defaults");
        assert_eq!(PasswordHash::new(DECOY_HASH).unwrap().algorithm, PasswordHash::new(&real).unwrap().algorithm);
        assert!(!verify_password(DECOY_HASH, "a password") && !verify_password(DECOY_HASH, ""));
    }
}
