//! Local accounts: people who log in with a password and service accounts for
//! agents. Pure rules (`decide`, `apply`) plus how users map onto the log.
//! Writes are rare, so they use the log's optimistic concurrency directly
//! (expected sequence) instead of a long-lived actor per user.

use serde::{Deserialize, Serialize};
use storage::{IndexOp, Log, StorageError};

use crate::policy::Role;

/// Index of users: key = username.
pub const INDEX: &str = "users";

/// A person who logs in, or a service (an agent) that holds a long-lived token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Human,
    Service,
}

/// Who an account is and what it may touch: the fields an admin sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub username: String,
    pub kind: AccountKind,
    pub role: Role,
    pub accounts: Vec<String>,
    pub sites: Vec<String>,
    pub queues: Vec<String>,
    /// For service accounts: the only tools they may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// A local account as stored (the password hash never leaves the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub account: Account,
    /// argon2id PHC string; `None` for service accounts.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub version: u64,
    pub created_ms: i64,
}

/// What the API shows of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    #[serde(flatten)]
    pub account: Account,
    pub disabled: bool,
    pub version: u64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView { account: u.account.clone(), disabled: u.disabled, version: u.version }
    }
}

/// What an admin can do to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// A new account; people come with their password already hashed.
    Create {
        account: Account,
        password_hash: Option<String>,
    },
    Disable,
    SetRole(Role),
    ResetPassword(String),
}

/// What happened to an account; stored as JSON in `user/<username>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserEvent {
    Created { account: Account, password_hash: Option<String> },
    Disabled {},
    RoleSet { role: Role },
    PasswordReset { password_hash: String },
}

impl UserEvent {
    /// The event kind as stored in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            UserEvent::Created { .. } => "user.created",
            UserEvent::Disabled {} => "user.disabled",
            UserEvent::RoleSet { .. } => "user.role_set",
            UserEvent::PasswordReset { .. } => "user.password_reset",
        }
    }
}

/// Why an account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user not found")]
    NotFound,
    #[error("user already exists")]
    AlreadyExists,
    #[error("{0}")]
    Invalid(String),
    /// The command does not fit the account as it is now (already disabled, a
    /// service account's password).
    #[error("{0}")]
    Conflict(String),
}

/// Checks an account command against the current account.
pub fn decide(user: Option<&User>, command: &UserCommand) -> Result<Vec<UserEvent>, UserError> {
    match (user, command) {
        (Some(_), UserCommand::Create { .. }) => Err(UserError::AlreadyExists),
        (None, UserCommand::Create { account: new, password_hash }) => {
            validate_username(&new.username)?;
            if new.accounts.is_empty() || new.sites.is_empty() {
                return Err(UserError::Invalid(
                    "accounts and sites must each name at least one entry (\"*\" for all)".into(),
                ));
            }
            match (new.kind, password_hash, &new.tools) {
                (AccountKind::Human, None, _) => return Err(UserError::Invalid("a person needs a password".into())),
                (AccountKind::Human, _, Some(_)) => {
                    return Err(UserError::Invalid("tool lists are for service accounts".into()));
                }
                (AccountKind::Service, Some(_), _) => {
                    return Err(UserError::Invalid("service accounts have tokens, not passwords".into()));
                }
                _ => {}
            }
            if let Some(unknown) = new.tools.iter().flatten().find(|t| crate::policy::tool(t).is_none()) {
                return Err(UserError::Invalid(format!("unknown tool {unknown:?}")));
            }
            Ok(vec![UserEvent::Created { account: new.clone(), password_hash: password_hash.clone() }])
        }
        (None, _) => Err(UserError::NotFound),
        (Some(u), UserCommand::Disable) if u.disabled => Err(UserError::Conflict("user is already disabled".into())),
        (Some(_), UserCommand::Disable) => Ok(vec![UserEvent::Disabled {}]),
        (Some(_), UserCommand::SetRole(role)) => Ok(vec![UserEvent::RoleSet { role: *role }]),
        (Some(u), UserCommand::ResetPassword(_)) if u.account.kind == AccountKind::Service => {
            Err(UserError::Conflict("service accounts have no password".into()))
        }
        (Some(_), UserCommand::ResetPassword(hash)) => {
            Ok(vec![UserEvent::PasswordReset { password_hash: hash.clone() }])
        }
    }
}

/// Folds one event into the account.
pub fn apply(user: Option<User>, seq: u64, at_ms: i64, event: &UserEvent) -> Option<User> {
    let mut u = match (user, event) {
        (None, UserEvent::Created { account, password_hash }) => {
            return Some(User {
                account: account.clone(),
                password_hash: password_hash.clone(),
                disabled: false,
                version: seq,
                created_ms: at_ms,
            });
        }
        (None, _) => return None,
        (Some(u), _) => u,
    };
    match event {
        UserEvent::Created { .. } => return Some(u),
        UserEvent::Disabled {} => u.disabled = true,
        UserEvent::RoleSet { role } => u.account.role = *role,
        UserEvent::PasswordReset { password_hash } => u.password_hash = Some(password_hash.clone()),
    }
    u.version = seq;
    Some(u)
}

/// The usernames an account may have, as a JSON Schema pattern (what `validate_username` checks).
pub const USERNAME_PATTERN: &str = "^[a-z0-9._-]{1,64}$";

fn validate_username(name: &str) -> Result<(), UserError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid("usernames are 1–64 characters of a–z, 0–9, '.', '_' or '-'".into()))
    }
}

/// The log stream of one account.
pub fn stream(username: &str) -> String {
    format!("user/{username}")
}

/// The account as stored, rebuilt from its events.
pub fn load(log: &Log, username: &str) -> Result<Option<User>, StorageError> {
    Ok(crate::kernel::load::<Users>(log, &username.to_owned()).map_err(StorageError::from)?.state)
}

/// Every account, by username.
pub fn list(log: &Log) -> Result<Vec<User>, StorageError> {
    let mut out = Vec::new();
    for (name, _) in log.index_scan(INDEX, "", usize::MAX)? {
        if let Some(u) = load(log, &name)? {
            out.push(u);
        }
    }
    Ok(out)
}

/// Index changes when an account is created.
pub fn index_ops(before: Option<&User>, after: &User) -> Vec<IndexOp> {
    match before {
        None => vec![IndexOp::Put { index: INDEX.into(), key: after.account.username.clone(), value: Vec::new() }],
        Some(_) => Vec::new(),
    }
}

/// The account kind on the kernel (rare commands: run with `kernel::run_once`).
#[derive(Debug, Clone, Copy)]
pub struct Users;

impl crate::kernel::Entity for Users {
    const KIND: &'static str = "user";
    const STREAM: &'static str = "user";

    type Id = String;
    type State = User;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Deps = ();

    fn creates(command: &UserCommand) -> bool {
        matches!(command, UserCommand::Create { .. })
    }

    fn not_found() -> UserError {
        UserError::NotFound
    }

    fn decide(
        _: &(),
        _: &crate::kernel::Context<'_, Self>,
        user: Option<&User>,
        command: &UserCommand,
    ) -> Result<Vec<UserEvent>, UserError> {
        decide(user, command)
    }

    fn apply(user: Option<User>, at: crate::kernel::At<'_, String>, event: &UserEvent) -> Option<User> {
        apply(user, at.seq, at.time_ms, event)
    }

    fn event_kind(event: &UserEvent) -> &'static str {
        event.kind()
    }

    fn state_name(user: &User) -> &'static str {
        if user.disabled { "DISABLED" } else { "ACTIVE" }
    }

    fn index_ops(
        _: &crate::kernel::Context<'_, Self>,
        before: Option<&User>,
        after: &User,
        _: &[UserEvent],
    ) -> Vec<IndexOp> {
        index_ops(before, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account {
            username: name.into(),
            kind: AccountKind::Human,
            role: Role::Dispatcher,
            accounts: vec!["*".into()],
            sites: vec!["*".into()],
            queues: vec![],
            tools: None,
        }
    }

    fn person(name: &str) -> UserCommand {
        UserCommand::Create { account: account(name), password_hash: Some("$argon2id$…".into()) }
    }

    #[test]
    fn account_rules() {
        let created = apply(None, 1, 0, &decide(None, &person("ann")).unwrap()[0]).unwrap();
        let disabled =
            apply(Some(created.clone()), 2, 0, &decide(Some(&created), &UserCommand::Disable).unwrap()[0]).unwrap();
        assert!(disabled.disabled);
        let bot = Account { kind: AccountKind::Service, tools: Some(vec!["ticket.get".into()]), ..account("bot") };
        let service = |account: Account| UserCommand::Create { account, password_hash: None };
        type Case<'a> = (&'a str, Option<&'a User>, UserCommand, Result<(), UserError>);
        let cases: Vec<Case> = vec![
            ("duplicate", Some(&created), person("ann"), Err(UserError::AlreadyExists)),
            ("bad name", None, person("Ann Smith"), Err(UserError::Invalid(String::new()))),
            (
                "person without password",
                None,
                UserCommand::Create { account: account("b"), password_hash: None },
                Err(UserError::Invalid(String::new())),
            ),
            ("service", None, service(bot.clone()), Ok(())),
            (
                "service with unknown tool",
                None,
                service(Account { tools: Some(vec!["rm.rf".into()]), ..bot }),
                Err(UserError::Invalid(String::new())),
            ),
            ("disable twice", Some(&disabled), UserCommand::Disable, Err(UserError::Conflict(String::new()))),
            ("unknown user", None, UserCommand::Disable, Err(UserError::NotFound)),
            ("set role", Some(&created), UserCommand::SetRole(Role::Manager), Ok(())),
        ];
        for (name, user, cmd, expected) in cases {
            let got = decide(user, &cmd).map(|_| ());
            match (&got, &expected) {
                (Err(UserError::Invalid(_)), Err(UserError::Invalid(_)))
                | (Err(UserError::Conflict(_)), Err(UserError::Conflict(_)))
                | (Ok(()), Ok(())) => {}
                _ => assert_eq!(got, expected, "{name}"),
            }
        }
    }
}
