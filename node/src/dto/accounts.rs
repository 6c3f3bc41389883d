//! Accounts, callers, roles and the tool catalogue as the API speaks them.
//! Each type mirrors the domain type of the same name (see `dto/mod.rs`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tickets::TicketState;

/// A person who logs in, or a service (an agent) that holds a long-lived token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Human,
    Service,
}

/// Who an account is and what it may touch: the fields an admin sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// What the API shows of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    #[serde(flatten)]
    pub account: Account,
    pub disabled: bool,
    pub version: u64,
}

/// A caller's role, from the `role` claim of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Dispatcher,
    Technician,
    Manager,
    Qa,
    Billing,
    Agent,
    Operator,
    Engineer,
}

/// An authenticated caller, as established from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
    /// Accounts the caller may touch; `"*"` means all.
    pub accounts: Vec<String>,
    /// Sites the caller may touch; `"*"` means all.
    pub sites: Vec<String>,
    /// When present, the only tools this caller may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    #[serde(default)]
    pub queues: Vec<String>,
}

/// Which dimension of policy refused a request; reported in error bodies and the
/// cockpit's disabled reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDimension {
    Role,
    Tool,
    State,
    Scope,
    Evidence,
}

/// One tool: a named command or read, the roles that may use it and the ticket
/// states it is allowed from. Which route serves it is the route table's business
/// (the route's OpenAPI operation id is the tool's name).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolSpec {
    pub name: String,
    pub roles: Vec<Role>,
    /// States the ticket must be in; empty for reads and creation.
    pub from_states: Vec<TicketState>,
    /// Whether the tool changes state.
    pub mutating: bool,
    /// Whether its route requires an `Idempotency-Key` (a retry with the same key and
    /// body replays the first answer).
    pub keyed: bool,
    pub summary: String,
}

/// Whether a caller may take a ticket action now, and if not, which rule says no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActionAvailability {
    pub tool: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<DisabledReason>,
}

/// The rule that disables an action, as shown to the person who cannot take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DisabledReason {
    pub policy: PolicyDimension,
    pub message: String,
}

// ------------------------------------------------------------- to and from the domain

impl From<actors::user::AccountKind> for AccountKind {
    fn from(v: actors::user::AccountKind) -> Self {
        match v {
            actors::user::AccountKind::Human => AccountKind::Human,
            actors::user::AccountKind::Service => AccountKind::Service,
        }
    }
}

impl From<AccountKind> for actors::user::AccountKind {
    fn from(v: AccountKind) -> Self {
        match v {
            AccountKind::Human => actors::user::AccountKind::Human,
            AccountKind::Service => actors::user::AccountKind::Service,
        }
    }
}

impl From<actors::user::Account> for Account {
    fn from(v: actors::user::Account) -> Self {
        let actors::user::Account { username, kind, role, accounts, sites, queues, tools } = v;
        Account { username, kind: kind.into(), role: role.into(), accounts, sites, queues, tools }
    }
}

impl From<Account> for actors::user::Account {
    fn from(v: Account) -> Self {
        let Account { username, kind, role, accounts, sites, queues, tools } = v;
        actors::user::Account { username, kind: kind.into(), role: role.into(), accounts, sites, queues, tools }
    }
}

impl From<actors::user::UserView> for UserView {
    fn from(v: actors::user::UserView) -> Self {
        let actors::user::UserView { account, disabled, version } = v;
        UserView { account: account.into(), disabled, version }
    }
}

impl From<actors::policy::Role> for Role {
    fn from(v: actors::policy::Role) -> Self {
        match v {
            actors::policy::Role::Admin => Role::Admin,
            actors::policy::Role::Dispatcher => Role::Dispatcher,
            actors::policy::Role::Technician => Role::Technician,
            actors::policy::Role::Manager => Role::Manager,
            actors::policy::Role::Qa => Role::Qa,
            actors::policy::Role::Billing => Role::Billing,
            actors::policy::Role::Agent => Role::Agent,
            actors::policy::Role::Operator => Role::Operator,
            actors::policy::Role::Engineer => Role::Engineer,
        }
    }
}

impl From<Role> for actors::policy::Role {
    fn from(v: Role) -> Self {
        match v {
            Role::Admin => actors::policy::Role::Admin,
            Role::Dispatcher => actors::policy::Role::Dispatcher,
            Role::Technician => actors::policy::Role::Technician,
            Role::Manager => actors::policy::Role::Manager,
            Role::Qa => actors::policy::Role::Qa,
            Role::Billing => actors::policy::Role::Billing,
            Role::Agent => actors::policy::Role::Agent,
            Role::Operator => actors::policy::Role::Operator,
            Role::Engineer => actors::policy::Role::Engineer,
        }
    }
}

impl From<actors::policy::Principal> for Principal {
    fn from(v: actors::policy::Principal) -> Self {
        let actors::policy::Principal { sub, role, accounts, sites, tools, queues } = v;
        Principal { sub, role: role.into(), accounts, sites, tools, queues }
    }
}

impl From<Principal> for actors::policy::Principal {
    fn from(v: Principal) -> Self {
        let Principal { sub, role, accounts, sites, tools, queues } = v;
        actors::policy::Principal { sub, role: role.into(), accounts, sites, tools, queues }
    }
}

impl From<actors::policy::PolicyDimension> for PolicyDimension {
    fn from(v: actors::policy::PolicyDimension) -> Self {
        match v {
            actors::policy::PolicyDimension::Role => PolicyDimension::Role,
            actors::policy::PolicyDimension::Tool => PolicyDimension::Tool,
            actors::policy::PolicyDimension::State => PolicyDimension::State,
            actors::policy::PolicyDimension::Scope => PolicyDimension::Scope,
            actors::policy::PolicyDimension::Evidence => PolicyDimension::Evidence,
        }
    }
}

impl From<PolicyDimension> for actors::policy::PolicyDimension {
    fn from(v: PolicyDimension) -> Self {
        match v {
            PolicyDimension::Role => actors::policy::PolicyDimension::Role,
            PolicyDimension::Tool => actors::policy::PolicyDimension::Tool,
            PolicyDimension::State => actors::policy::PolicyDimension::State,
            PolicyDimension::Scope => actors::policy::PolicyDimension::Scope,
            PolicyDimension::Evidence => actors::policy::PolicyDimension::Evidence,
        }
    }
}

impl From<actors::policy::ToolSpec> for ToolSpec {
    fn from(v: actors::policy::ToolSpec) -> Self {
        let actors::policy::ToolSpec { name, roles, from_states, mutating, keyed, summary } = v;
        ToolSpec {
            name: name.to_owned(),
            roles: roles.iter().map(|x| (*x).into()).collect(),
            from_states: from_states.iter().map(|x| (*x).into()).collect(),
            mutating,
            keyed,
            summary: summary.to_owned(),
        }
    }
}

impl From<actors::policy::ActionAvailability> for ActionAvailability {
    fn from(v: actors::policy::ActionAvailability) -> Self {
        let actors::policy::ActionAvailability { tool, enabled, disabled_reason } = v;
        ActionAvailability { tool: tool.to_owned(), enabled, disabled_reason: disabled_reason.map(Into::into) }
    }
}

impl From<actors::policy::DisabledReason> for DisabledReason {
    fn from(v: actors::policy::DisabledReason) -> Self {
        let actors::policy::DisabledReason { policy, message } = v;
        DisabledReason { policy: policy.into(), message }
    }
}
