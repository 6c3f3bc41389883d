//! Login sessions: each login starts a family of rotating refresh tokens. A refresh
//! token is good once; presenting one that was already rotated away means someone
//! copied it, so the whole family is revoked (theft detection). Also: the durable
//! revocation entries that make access tokens die before their `exp`.

use serde::{Deserialize, Serialize};
use storage::{IndexOp, Log, StorageError};

use crate::kernel::{At, Context, Entity};

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
    Ok(crate::kernel::load::<Sessions>(log, &id.to_owned()).map_err(StorageError::from)?.state)
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

/// The durable entry that makes tokens of `kind`/`value` issued before `at` invalid.
pub fn revocation(kind: RevokedKind, value: &str, at: i64) -> IndexOp {
    IndexOp::Put { index: REVOKED_INDEX.into(), key: revoked_key(kind, value), value: at.to_le_bytes().to_vec() }
}

/// What can be done to a login session.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    Start {
        username: String,
        token_hash: String,
        expires_ms: i64,
    },
    /// Trade the presented refresh token (by hash) for `new_hash`: rotated when it is
    /// the current one, the whole session revoked when it was already used.
    Refresh {
        presented_hash: String,
        new_hash: String,
        expires_ms: i64,
    },
    Revoke {
        reason: String,
    },
}

/// Why a session command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    #[error("unknown session")]
    Unknown,
    #[error("{0}")]
    Refused(String),
}

/// The reason recorded when a used refresh token comes back.
pub const REUSED: &str = "refresh token reused";

/// The login-session kind on the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Sessions;

impl Entity for Sessions {
    const KIND: &'static str = "session";
    const STREAM: &'static str = "session";

    type Id = String;
    type State = Session;
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionRefusal;
    type Deps = ();

    fn creates(command: &SessionCommand) -> bool {
        matches!(command, SessionCommand::Start { .. })
    }

    fn not_found() -> SessionRefusal {
        SessionRefusal::Unknown
    }

    fn decide(
        _: &(),
        cx: &Context<'_, Self>,
        session: Option<&Session>,
        command: &SessionCommand,
    ) -> Result<Vec<SessionEvent>, SessionRefusal> {
        let event = match (session, command) {
            (None, SessionCommand::Start { username, token_hash, expires_ms }) => SessionEvent::Started {
                username: username.clone(),
                token_hash: token_hash.clone(),
                expires_ms: *expires_ms,
            },
            (None, _) | (Some(_), SessionCommand::Start { .. }) => return Err(SessionRefusal::Unknown),
            (Some(s), SessionCommand::Refresh { presented_hash, new_hash, expires_ms }) => {
                match decide_refresh(s, presented_hash, cx.now_ms) {
                    RefreshDecision::Refused(why) => return Err(SessionRefusal::Refused(why)),
                    RefreshDecision::ReuseDetected => SessionEvent::Revoked { reason: REUSED.into() },
                    RefreshDecision::Rotate => {
                        SessionEvent::Rotated { token_hash: new_hash.clone(), expires_ms: *expires_ms }
                    }
                }
            }
            (Some(_), SessionCommand::Revoke { reason }) => SessionEvent::Revoked { reason: reason.clone() },
        };
        Ok(vec![event])
    }

    fn apply(session: Option<Session>, at: At<'_, String>, event: &SessionEvent) -> Option<Session> {
        apply(session, at.id, at.seq, event)
    }

    fn event_kind(event: &SessionEvent) -> &'static str {
        event.kind()
    }

    fn state_name(session: &Session) -> &'static str {
        if session.revoked.is_some() { "REVOKED" } else { "ACTIVE" }
    }

    /// The refresh-token index follows the current token; a revoked session is
    /// recorded as revoked (so every access token of it dies too).
    fn index_ops(
        cx: &Context<'_, Self>,
        _: Option<&Session>,
        after: &Session,
        events: &[SessionEvent],
    ) -> Vec<IndexOp> {
        let refresh = |hash: &str| IndexOp::Put {
            index: REFRESH_INDEX.into(),
            key: hash.to_owned(),
            value: after.id.clone().into_bytes(),
        };
        let mut ops = Vec::new();
        for event in events {
            match event {
                SessionEvent::Started { username, token_hash, .. } => {
                    ops.push(refresh(token_hash));
                    ops.push(IndexOp::Put {
                        index: USER_SESSIONS_INDEX.into(),
                        key: user_session_key(username, &after.id),
                        value: after.id.clone().into_bytes(),
                    });
                }
                SessionEvent::Rotated { token_hash, .. } => ops.push(refresh(token_hash)),
                SessionEvent::Revoked { .. } => ops.push(revocation(RevokedKind::Session, &after.id, cx.now_ms)),
            }
        }
        ops
    }
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
