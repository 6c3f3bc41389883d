//! Login sessions: each login starts a family of rotating refresh tokens. A refresh
//! token is good once; presenting one that was already rotated away means someone
//! copied it, so the whole family is revoked (theft detection). Also: the durable
//! revocation entries that make access tokens die before their `exp`.

use serde::{Deserialize, Serialize};
use storage::{Log, StorageError};

/// Index from a refresh token's hash (hex) to its session id.
pub const REFRESH_INDEX: &str = "refresh_tokens";
/// Index of a user's login sessions: `<username>␟<session id>` → session id.
pub const USER_SESSIONS_INDEX: &str = "user_sessions";
/// Index of tokens minted by an admin or for a service account: jti → JSON record.
pub const MINTED_TOKENS_INDEX: &str = "minted_tokens";

/// The key of a session in [`USER_SESSIONS_INDEX`].
pub fn user_session_key(username: &str, session: &str) -> String {
    format!("{username}\u{1f}{session}")
}

/// Index of revocations: `jti␟<jti>`, `sid␟<session>`, `sub␟<subject>` → i64 (LE) millis.
pub const REVOKED_INDEX: &str = "revoked";

/// One login session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub username: String,
    /// Hash of the one refresh token that may be used next.
    pub current_hash: String,
    pub expires_ms: i64,
    pub revoked: Option<String>,
    pub version: u64,
}

/// What happened to a session; stored in `session/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    Started { username: String, token_hash: String, expires_ms: i64 },
    Rotated { token_hash: String, expires_ms: i64 },
    Revoked { reason: String },
}

impl SessionEvent {
    /// The event kind as stored in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Started { .. } => "session.started",
            SessionEvent::Rotated { .. } => "session.rotated",
            SessionEvent::Revoked { .. } => "session.revoked",
        }
    }
}

/// What presenting a refresh token leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshDecision {
    /// The token is the current one: issue the next.
    Rotate,
    /// The token was already used: revoke the family.
    ReuseDetected,
    /// The session is over (revoked or expired).
    Refused(String),
}

/// Decides what a presented refresh token (by hash) gets.
pub fn decide_refresh(session: &Session, presented_hash: &str, now_ms: i64) -> RefreshDecision {
    if let Some(reason) = &session.revoked {
        return RefreshDecision::Refused(format!("session revoked ({reason})"));
    }
    if session.expires_ms <= now_ms {
        return RefreshDecision::Refused("refresh token expired".into());
    }
    if session.current_hash != presented_hash {
        return RefreshDecision::ReuseDetected;
    }
    RefreshDecision::Rotate
}

/// Folds one event into the session.
pub fn apply(session: Option<Session>, id: &str, seq: u64, event: &SessionEvent) -> Option<Session> {
    let mut s = match (session, event) {
        (None, SessionEvent::Started { username, token_hash, expires_ms }) => {
            return Some(Session {
                id: id.to_owned(),
                username: username.clone(),
                current_hash: token_hash.clone(),
                expires_ms: *expires_ms,
                revoked: None,
                version: seq,
            });
        }
        (None, _) => return None,
        (Some(s), _) => s,
    };
    match event {
        SessionEvent::Started { .. } => return Some(s),
        SessionEvent::Rotated { token_hash, expires_ms } => {
            s.current_hash = token_hash.clone();
            s.expires_ms = *expires_ms;
        }
        SessionEvent::Revoked { reason } => s.revoked = Some(reason.clone()),
    }
    s.version = seq;
    Some(s)
}

/// The log stream of one session.
pub fn stream(id: &str) -> String {
    format!("session/{id}")
}

/// The session as stored.
pub fn load(log: &Log, id: &str) -> Result<Option<Session>, StorageError> {
    let mut session = None;
    for r in log.read_stream(&stream(id), 0)? {
        let event: SessionEvent = serde_json::from_slice(&r.payload)
            .map_err(|e| StorageError::Corrupt { table: "events", reason: format!("session event: {e}") })?;
        session = apply(session, id, r.seq, &event);
    }
    Ok(session)
}

/// Revocation index key for a token id, a session or a subject.
pub fn revoked_key(kind: RevokedKind, value: &str) -> String {
    let prefix = match kind {
        RevokedKind::Jti => "jti",
        RevokedKind::Session => "sid",
        RevokedKind::Subject => "sub",
    };
    format!("{prefix}\u{1f}{value}")
}

/// What a revocation entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedKind {
    /// One access token; the value is its `exp` (ms), after which the entry is moot.
    Jti,
    /// Every access token of a login session.
    Session,
    /// Every token of a subject issued before the value (ms); `i64::MAX` for a disabled user.
    Subject,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_rules() {
        let started = SessionEvent::Started { username: "ann".into(), token_hash: "h1".into(), expires_ms: 1_000 };
        let s = apply(None, "s1", 1, &started).unwrap();
        assert_eq!(decide_refresh(&s, "h1", 10), RefreshDecision::Rotate);
        let s = apply(Some(s), "s1", 2, &SessionEvent::Rotated { token_hash: "h2".into(), expires_ms: 2_000 }).unwrap();
        assert_eq!(decide_refresh(&s, "h1", 10), RefreshDecision::ReuseDetected, "h1 was already used");
        assert_eq!(decide_refresh(&s, "h2", 10), RefreshDecision::Rotate);
        assert!(matches!(decide_refresh(&s, "h2", 2_000), RefreshDecision::Refused(_)), "expired");
        let s = apply(Some(s), "s1", 3, &SessionEvent::Revoked { reason: "logout".into() }).unwrap();
        assert!(matches!(decide_refresh(&s, "h2", 10), RefreshDecision::Refused(_)), "revoked");
    }
}
