//! Accounts and sign-in: argon2id passwords, login sessions with rotating refresh
//! tokens, revocation, and login rate limits. The rules live in `actors::user` and
//! `actors::session`; this module hashes, writes them to the log and keeps the
//! in-memory revocation set in step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actors::policy::Principal;
use actors::session::{self, RefreshDecision, RevokedKind, SessionEvent};
use actors::storage::{ActorRef, Append, AppendError, IndexOp, NewEvent};
use actors::user::{self, User, UserCommand, UserError, UserEvent};
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
use crate::clock::now_ms;

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

/// A hash of nothing anyone knows, verified when the user does not exist so a
/// failed login takes as long for a missing user as for a wrong password.
pub fn decoy_hash() -> String {
    hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
}

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

/// An audit event caused by `actor` through `tool`.
pub(crate) fn event(actor: &Principal, tool: &str, kind: &str, payload: Vec<u8>) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        time_ms: now_ms(),
        actor: ActorRef { kind: "user".into(), id: actor.sub.clone(), role: actor.role.as_str().into() },
        tool: tool.into(),
        request_id: crate::api::error::REQUEST_ID.try_with(Clone::clone).unwrap_or_default(),
        correlation_id: None,
        trace_id: None,
        kind: kind.into(),
        from_state: None,
        to_state: None,
        payload,
    }
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

pub(crate) fn revocation(kind: RevokedKind, value: &str, at: i64) -> IndexOp {
    IndexOp::Put {
        index: session::REVOKED_INDEX.into(),
        key: session::revoked_key(kind, value),
        value: at.to_le_bytes().to_vec(),
    }
}

fn storage_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("reading accounts", e)
}

/// Runs an account command by `actor`, writing its events and the revocations it
/// implies (disable, new role or password: older tokens of that user stop working).
pub async fn user_command(
    app: &AppInner,
    actor: &Principal,
    username: &str,
    command: UserCommand,
) -> Result<User, ApiError> {
    for _ in 0..3 {
        let before = user::load(&app.log, username).map_err(storage_err)?;
        let events = user::decide(before.as_ref(), &command).map_err(|e| match e {
            UserError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "USER_NOT_FOUND", "user not found"),
            UserError::AlreadyExists => {
                ApiError::new(StatusCode::CONFLICT, "USER_EXISTS", "a user with this name exists")
            }
            UserError::Invalid(m) => ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, m),
        })?;
        let expected_seq = before.as_ref().map_or(0, |u| u.version);
        let mut after = before.clone();
        let mut new_events = Vec::new();
        for (i, e) in events.iter().enumerate() {
            after = user::apply(after, expected_seq + i as u64 + 1, now_ms(), e);
            let payload = serde_json::to_vec(e).map_err(storage_err)?;
            new_events.push(event(actor, "user.admin", e.kind(), payload));
        }
        let after = after.ok_or_else(|| ApiError::internal("applying an account event", "no user"))?;
        let mut index_ops = user::index_ops(before.as_ref(), &after);
        let revoke_before = match &events[..] {
            [UserEvent::Disabled {}] => Some(i64::MAX),
            [UserEvent::RoleSet { .. }] | [UserEvent::PasswordReset { .. }] => Some(now_ms()),
            _ => None,
        };
        // Every login session ends too: a refresh token taken before the change must
        // not mint new access tokens after it.
        let mut sessions = Vec::new();
        if let Some(at) = revoke_before {
            index_ops.push(revocation(RevokedKind::Subject, username, at));
            sessions = session_ids(app, username)?;
            index_ops.extend(sessions.iter().map(|sid| revocation(RevokedKind::Session, sid, now_ms())));
        }
        let append = Append {
            stream: user::stream(username),
            expected_seq,
            events: new_events,
            index_ops,
            ..Default::default()
        };
        match app.writer.append(append).await {
            Ok(_) => {
                if let Some(at) = revoke_before {
                    app.auth.revoke(RevokedKind::Subject, username, at);
                }
                for sid in &sessions {
                    app.auth.revoke(RevokedKind::Session, sid, now_ms());
                }
                return Ok(after);
            }
            Err(AppendError::SequenceConflict { .. }) => continue,
            Err(e) => return Err(ApiError::unavailable(e.to_string())),
        }
    }
    Err(ApiError::unavailable("the account kept changing; retry"))
}

/// The ids of every login session `username` ever started.
pub(crate) fn session_ids(app: &AppInner, username: &str) -> Result<Vec<String>, ApiError> {
    let prefix = session::user_session_key(username, "");
    let entries = app.log.index_scan(session::USER_SESSIONS_INDEX, &prefix, usize::MAX).map_err(storage_err)?;
    Ok(entries.into_iter().filter_map(|(_, v)| String::from_utf8(v).ok()).collect())
}

fn principal_of(u: &User) -> Principal {
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

/// A service account's long-lived token (its `tools` claim narrows what it may call),
/// recorded like an admin's mint so it can be listed and revoked.
pub async fn service_token(app: &AppInner, by: &Principal, u: &User) -> Result<String, ApiError> {
    let (token, claims) =
        app.auth.mint(&principal_of(u), SERVICE_TOKEN_TTL_SECONDS).map_err(|e| ApiError::internal("minting", e))?;
    crate::tokens::record_minted(app, by, &token, &claims).await?;
    Ok(token)
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
    let hash = usable.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| app.decoy_hash.clone());
    let ok = verify_password_blocking(hash, password.to_owned()).await && usable.is_some();
    let Some(user) = usable.filter(|_| ok) else {
        metrics::counter!("dispatch_auth_logins_total", "outcome" => "failure").increment(1);
        tracing::warn!(username, client, "login failed");
        return Err(invalid_login());
    };
    app.login_limits.per_user.clear(username);
    let sid = uuid::Uuid::new_v4().to_string();
    let (refresh, hash) = new_refresh_token();
    let started = SessionEvent::Started {
        username: user.account.username.clone(),
        token_hash: hash.clone(),
        expires_ms: now_ms() + REFRESH_TTL_SECONDS * 1000,
    };
    let principal = principal_of(&user);
    let append = Append {
        stream: session::stream(&sid),
        expected_seq: 0,
        events: vec![event(
            &principal,
            "auth.login",
            started.kind(),
            serde_json::to_vec(&started).map_err(storage_err)?,
        )],
        index_ops: vec![
            IndexOp::Put { index: session::REFRESH_INDEX.into(), key: hash, value: sid.clone().into_bytes() },
            IndexOp::Put {
                index: session::USER_SESSIONS_INDEX.into(),
                key: session::user_session_key(&user.account.username, &sid),
                value: sid.clone().into_bytes(),
            },
        ],
        ..Default::default()
    };
    app.writer.append(append).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
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
    for _ in 0..3 {
        let s = session::load(&app.log, &sid)
            .map_err(storage_err)?
            .ok_or_else(|| refresh_refused("unknown refresh token"))?;
        if app.auth.session_revoked(&sid) {
            return Err(refresh_refused("the session was ended (logout, password reset, role change or revocation)"));
        }
        let user = user::load(&app.log, &s.username).map_err(storage_err)?.filter(|u| !u.disabled);
        let Some(user) = user else { return Err(refresh_refused("the account is disabled")) };
        let principal = principal_of(&user);
        let (next, append, outcome) = match session::decide_refresh(&s, &presented, now_ms()) {
            RefreshDecision::Refused(why) => return Err(refresh_refused(&why)),
            RefreshDecision::ReuseDetected => {
                let revoked = SessionEvent::Revoked { reason: "refresh token reused".into() };
                let op = revocation(RevokedKind::Session, &sid, now_ms());
                (None, session_append(&principal, &s, &revoked, op)?, "reuse_detected")
            }
            RefreshDecision::Rotate => {
                let (token, hash) = new_refresh_token();
                let rotated = SessionEvent::Rotated {
                    token_hash: hash.clone(),
                    expires_ms: now_ms() + REFRESH_TTL_SECONDS * 1000,
                };
                let op =
                    IndexOp::Put { index: session::REFRESH_INDEX.into(), key: hash, value: sid.clone().into_bytes() };
                (Some(token), session_append(&principal, &s, &rotated, op)?, "rotated")
            }
        };
        match app.writer.append(append).await {
            Ok(_) => {
                metrics::counter!("dispatch_auth_refresh_total", "outcome" => outcome).increment(1);
                return match next {
                    Some(token) => access_pair(app, &principal, sid, token),
                    None => {
                        app.auth.revoke(RevokedKind::Session, &sid, now_ms());
                        tracing::warn!(session = %sid, username = %s.username, "refresh token reused: session revoked");
                        Err(ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "REFRESH_TOKEN_REUSED",
                            "this refresh token was already used; the session is revoked",
                        ))
                    }
                };
            }
            // Two refreshes raced: decide again on the new state (the loser is a reuse).
            Err(AppendError::SequenceConflict { .. }) => continue,
            Err(e) => return Err(ApiError::unavailable(e.to_string())),
        }
    }
    Err(ApiError::unavailable("the session kept changing; retry"))
}

/// The next event of a session, with the index change it brings.
fn session_append(actor: &Principal, s: &session::Session, e: &SessionEvent, op: IndexOp) -> Result<Append, ApiError> {
    Ok(Append {
        stream: session::stream(&s.id),
        expected_seq: s.version,
        events: vec![event(actor, "auth.refresh", e.kind(), serde_json::to_vec(e).map_err(storage_err)?)],
        index_ops: vec![op],
        ..Default::default()
    })
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
    let mut index_ops = Vec::new();
    if let Some(c) = access {
        index_ops.push(revocation(RevokedKind::Jti, &c.jti, c.exp));
    }
    if let Some(sid) = &sid {
        index_ops.push(revocation(RevokedKind::Session, sid, now_ms()));
    }
    let actor = Principal {
        sub: access.map_or("anonymous".into(), |c| c.sub.clone()),
        role: access.map_or(actors::policy::Role::Agent, |c| c.role),
        accounts: vec![],
        sites: vec![],
        tools: None,
        queues: vec![],
    };
    let (stream, expected_seq, events) = match &sid {
        Some(sid) => {
            let s = session::load(&app.log, sid).map_err(storage_err)?;
            let revoked = SessionEvent::Revoked { reason: "logout".into() };
            let ev = event(&actor, "auth.logout", revoked.kind(), serde_json::to_vec(&revoked).map_err(storage_err)?);
            (session::stream(sid), s.map_or(0, |s| s.version), vec![ev])
        }
        None => ("auth/logouts".to_owned(), app.log.stream_head("auth/logouts").map_err(storage_err)?.0, vec![]),
    };
    let append = Append { stream, expected_seq, events, index_ops, ..Default::default() };
    app.writer.append(append).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    if let Some(c) = access {
        app.auth.revoke(RevokedKind::Jti, &c.jti, c.exp);
    }
    if let Some(sid) = &sid {
        app.auth.revoke(RevokedKind::Session, sid, now_ms());
    }
    Ok(())
}
