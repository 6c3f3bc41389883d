//! Bootstrap tokens as the orchestrator keeps them: how many uses are left, when
//! they expire, whether they were revoked. The token string itself (signed, carrying
//! the CA pin and addresses) is made and checked by the cluster layer; this is the
//! use-counting, as pure functions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A bootstrap token's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub id: String,
    /// Labels given to every node that joins with this token.
    pub labels: BTreeMap<String, String>,
    pub uses_allowed: u32,
    pub uses: u32,
    pub expires_ms: i64,
    pub revoked: bool,
    pub created_ms: i64,
    pub created_by: String,
    /// Nodes that joined with it.
    pub nodes: Vec<String>,
}

/// Something that happened to a token. Stored in the log as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenEvent {
    Created { labels: BTreeMap<String, String>, uses_allowed: u32, expires_ms: i64, created_by: String },
    Used { node_id: String },
    Revoked,
}

impl TokenEvent {
    /// The event's kind as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenEvent::Created { .. } => "join_token.created",
            TokenEvent::Used { .. } => "join_token.used",
            TokenEvent::Revoked => "join_token.revoked",
        }
    }
}

/// Why a token cannot be used to join; the worker prints the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the join token is not known to this orchestrator")]
    Unknown,
    #[error("the join token has expired")]
    Expired,
    #[error("the join token has no uses left")]
    UsedUp,
    #[error("the join token was revoked")]
    Revoked,
    #[error("the join token's signature does not verify (forged or altered)")]
    Forged,
}

impl TokenRefusal {
    /// Stable code for scripts and metrics labels.
    pub fn code(self) -> &'static str {
        match self {
            TokenRefusal::Unknown => "TOKEN_UNKNOWN",
            TokenRefusal::Expired => "TOKEN_EXPIRED",
            TokenRefusal::UsedUp => "TOKEN_USED_UP",
            TokenRefusal::Revoked => "TOKEN_REVOKED",
            TokenRefusal::Forged => "TOKEN_FORGED",
        }
    }
}

/// Whether `token` may admit one more node at `now_ms`.
pub fn check_use(token: Option<&JoinToken>, now_ms: i64) -> Result<(), TokenRefusal> {
    let token = token.ok_or(TokenRefusal::Unknown)?;
    if token.revoked {
        Err(TokenRefusal::Revoked)
    } else if now_ms >= token.expires_ms {
        Err(TokenRefusal::Expired)
    } else if token.uses >= token.uses_allowed {
        Err(TokenRefusal::UsedUp)
    } else {
        Ok(())
    }
}

/// What can be done to a token.
#[derive(Debug, Clone)]
pub enum TokenCommand {
    Create {
        labels: BTreeMap<String, String>,
        uses_allowed: u32,
        expires_ms: i64,
        created_by: String,
    },
    /// Admit one node (refused once used up, expired or revoked).
    Use {
        node_id: String,
    },
    Revoke,
}

/// The events a command causes on `token` (None before creation), at `now_ms`.
pub fn decide(token: Option<&JoinToken>, command: &TokenCommand, now_ms: i64) -> Result<Vec<TokenEvent>, TokenRefusal> {
    Ok(vec![match (token, command) {
        (None, TokenCommand::Create { labels, uses_allowed, expires_ms, created_by }) => TokenEvent::Created {
            labels: labels.clone(),
            uses_allowed: *uses_allowed,
            expires_ms: *expires_ms,
            created_by: created_by.clone(),
        },
        (_, TokenCommand::Use { node_id }) => {
            check_use(token, now_ms)?;
            TokenEvent::Used { node_id: node_id.clone() }
        }
        (Some(_), TokenCommand::Revoke) => TokenEvent::Revoked,
        (Some(_), TokenCommand::Create { .. }) | (None, TokenCommand::Revoke) => return Err(TokenRefusal::Unknown),
    }])
}

/// The token after `event`.
pub fn apply(token: Option<JoinToken>, id: &str, now_ms: i64, event: &TokenEvent) -> Option<JoinToken> {
    match event {
        TokenEvent::Created { labels, uses_allowed, expires_ms, created_by } => Some(JoinToken {
            id: id.to_owned(),
            labels: labels.clone(),
            uses_allowed: *uses_allowed,
            uses: 0,
            expires_ms: *expires_ms,
            revoked: false,
            created_ms: now_ms,
            created_by: created_by.clone(),
            nodes: Vec::new(),
        }),
        TokenEvent::Used { node_id } => token.map(|mut t| {
            t.uses += 1;
            t.nodes.push(node_id.clone());
            t
        }),
        TokenEvent::Revoked => token.map(|t| JoinToken { revoked: true, ..t }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_admits_its_uses_until_expiry_unless_revoked() {
        let created = TokenEvent::Created {
            labels: BTreeMap::new(),
            uses_allowed: 2,
            expires_ms: 1_000,
            created_by: "admin".into(),
        };
        let t = apply(None, "t1", 0, &created);
        assert_eq!(check_use(t.as_ref(), 0), Ok(()));
        assert_eq!(check_use(t.as_ref(), 1_000), Err(TokenRefusal::Expired));
        let once = apply(t.clone(), "t1", 1, &TokenEvent::Used { node_id: "node-1".into() });
        assert_eq!(check_use(once.as_ref(), 2), Ok(()));
        let twice = apply(once.clone(), "t1", 2, &TokenEvent::Used { node_id: "node-2".into() });
        assert_eq!(check_use(twice.as_ref(), 3), Err(TokenRefusal::UsedUp));
        assert_eq!(twice.as_ref().map(|t| t.nodes.len()), Some(2));
        let revoked = apply(once, "t1", 3, &TokenEvent::Revoked);
        assert_eq!(check_use(revoked.as_ref(), 4), Err(TokenRefusal::Revoked));
        assert_eq!(check_use(None, 0), Err(TokenRefusal::Unknown));
    }
}
