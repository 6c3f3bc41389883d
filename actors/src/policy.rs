//! The one policy table: which tools exist, the route each maps to, which roles may
//! call them and from which ticket states. The API enforces it, the tool catalogue
//! and the cockpit's action lists are read from it, so they cannot drift apart.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ticket::{Ticket, TicketState};

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

impl Role {
    /// Every role, for tables and docs.
    pub const ALL: [Role; 9] = [
        Role::Admin,
        Role::Dispatcher,
        Role::Technician,
        Role::Manager,
        Role::Qa,
        Role::Billing,
        Role::Agent,
        Role::Operator,
        Role::Engineer,
    ];

    /// The claim value, e.g. `dispatcher`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Dispatcher => "dispatcher",
            Role::Technician => "technician",
            Role::Manager => "manager",
            Role::Qa => "qa",
            Role::Billing => "billing",
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Engineer => "engineer",
        }
    }
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

impl Principal {
    /// True when the caller's account and site scopes both cover the pair.
    pub fn in_scope(&self, account_id: &str, site_id: &str) -> bool {
        let covers = |list: &[String], v: &str| list.iter().any(|s| s == "*" || s == v);
        covers(&self.accounts, account_id) && covers(&self.sites, site_id)
    }
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

/// A refusal by policy, before any domain rule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The role may not use this tool (or the technician is not the assignee).
    Role(String),
    /// The token's tool list does not include it.
    Tool(String),
    /// The ticket or requested account/site is outside the caller's scope.
    Scope(String),
}

/// One tool: a named command or read, its route, roles and allowed source states.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ToolSpec {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    #[schema(value_type = Vec<Role>)]
    pub roles: &'static [Role],
    /// States the ticket must be in; empty for reads and creation.
    #[schema(value_type = Vec<TicketState>)]
    pub from_states: &'static [TicketState],
    /// Whether the tool changes state (and so needs an `Idempotency-Key`).
    pub mutating: bool,
    pub summary: &'static str,
}

use Role::*;
use TicketState as S;

const OPEN: &[TicketState] = &[
    S::New,
    S::Triaged,
    S::ReadyToSchedule,
    S::ScheduleProposed,
    S::Scheduled,
    S::Dispatched,
    S::InProgress,
    S::ApprovalRequired,
    S::CompletedPendingVerification,
    S::Verified,
    S::Invoiced,
];
const ANY_ROLE: &[Role] = &Role::ALL;
const TASK_ROLES: &[Role] = &[Operator, Admin, Agent];
const OPERATORS: &[Role] = &[Operator, Admin];
const LANE_READERS: &[Role] = &[Agent, Operator, Admin];

/// The closed catalogue. A tool not listed here does not exist.
pub const TOOLS: &[ToolSpec] = &[
    t("ticket.create", "POST", "/v1/tickets", &[Dispatcher, Agent, Admin], &[], true, "Open a work order"),
    t("ticket.triage", "POST", "/v1/tickets/{id}/triage", &[Dispatcher, Agent], &[S::New], true, "Triage a new ticket"),
    t(
        "schedule.propose",
        "POST",
        "/v1/tickets/{id}/schedule/propose",
        &[Dispatcher, Agent],
        &[S::ReadyToSchedule, S::Triaged],
        true,
        "Propose service windows",
    ),
    t(
        "schedule.confirm",
        "POST",
        "/v1/tickets/{id}/schedule/confirm",
        &[Dispatcher, Agent],
        &[S::ScheduleProposed],
        true,
        "Confirm one proposed window",
    ),
    t(
        "assignment.dispatch",
        "POST",
        "/v1/tickets/{id}/assignment/dispatch",
        &[Dispatcher, Manager],
        &[S::Scheduled, S::Triaged],
        true,
        "Dispatch a technician (TRIAGED only as an emergency bypass)",
    ),
    t(
        "assignment.confirm_bypass",
        "POST",
        "/v1/tickets/{id}/assignment/bypass-confirmation",
        &[Manager],
        &[S::Triaged],
        false,
        "Confirm an emergency bypass (a manager, for another person's dispatch)",
    ),
    t(
        "tech.check_in",
        "POST",
        "/v1/tickets/{id}/tech/check-in",
        &[Technician],
        &[S::Dispatched],
        true,
        "Technician arrives on site",
    ),
    t(
        "tech.request_change",
        "POST",
        "/v1/tickets/{id}/tech/request-change",
        &[Technician],
        &[S::InProgress],
        true,
        "Ask a manager to approve a change of scope",
    ),
    t(
        "approval.decide",
        "POST",
        "/v1/tickets/{id}/approval/decide",
        &[Manager],
        &[S::ApprovalRequired],
        true,
        "Approve or deny a pending approval",
    ),
    t(
        "closeout.add_evidence",
        "POST",
        "/v1/tickets/{id}/evidence",
        &[Technician, Agent],
        &[S::Dispatched, S::InProgress, S::ApprovalRequired, S::CompletedPendingVerification],
        true,
        "Attach evidence",
    ),
    t(
        "tech.complete",
        "POST",
        "/v1/tickets/{id}/tech/complete",
        &[Technician],
        &[S::InProgress],
        true,
        "Finish the work once closeout is ready",
    ),
    t(
        "qa.verify",
        "POST",
        "/v1/tickets/{id}/qa/verify",
        &[Qa, Manager],
        &[S::CompletedPendingVerification],
        true,
        "Verify completed work",
    ),
    t(
        "billing.generate_invoice",
        "POST",
        "/v1/tickets/{id}/billing/generate-invoice",
        &[Billing],
        &[S::Verified],
        true,
        "Invoice verified work",
    ),
    t(
        "ticket.close",
        "POST",
        "/v1/tickets/{id}/close",
        &[Billing, Manager],
        &[S::Invoiced],
        true,
        "Close an invoiced ticket",
    ),
    t("ticket.cancel", "POST", "/v1/tickets/{id}/cancel", &[Dispatcher, Manager], OPEN, true, "Cancel an open ticket"),
    t("ticket.get", "GET", "/v1/tickets/{id}", ANY_ROLE, &[], false, "Read a ticket"),
    t("ticket.list", "GET", "/v1/tickets", ANY_ROLE, &[], false, "List tickets by state and site"),
    t("ticket.timeline", "GET", "/v1/tickets/{id}/timeline", ANY_ROLE, &[], false, "Read a ticket's audit timeline"),
    t("ticket.evidence", "GET", "/v1/tickets/{id}/evidence", ANY_ROLE, &[], false, "List a ticket's evidence"),
    t(
        "blob.upload",
        "POST",
        "/v1/blobs",
        &[Technician, Agent, Dispatcher, Admin],
        &[],
        true,
        "Upload an evidence file",
    ),
    t(
        "incident_templates.list",
        "GET",
        "/v1/incident-templates",
        ANY_ROLE,
        &[],
        false,
        "Closeout templates by incident type",
    ),
    t(
        "dispatcher.cockpit",
        "GET",
        "/v1/ux/dispatcher/cockpit",
        &[Dispatcher, Manager, Agent, Admin],
        &[],
        false,
        "Dispatcher queue with SLA and actions",
    ),
    t("tech.job_packet", "GET", "/v1/ux/technician/job-packet/{id}", ANY_ROLE, &[], false, "Technician job packet"),
    t("admin.tokens.create", "POST", "/v1/admin/tokens", &[Admin], &[], true, "Mint an access token"),
    t("admin.tokens.list", "GET", "/v1/admin/tokens", &[Admin], &[], false, "List minted tokens"),
    t("admin.tokens.revoke", "POST", "/v1/admin/tokens/{jti}/revoke", &[Admin], &[], true, "Revoke a minted token"),
    t(
        "admin.signing_keys.retire",
        "POST",
        "/v1/admin/signing-keys/{kid}/retire",
        &[Admin],
        &[],
        true,
        "Retire a signing key no live token needs",
    ),
    t(
        "admin.signing_keys.rotate",
        "POST",
        "/v1/admin/signing-keys",
        &[Admin],
        &[],
        true,
        "Add a new token signing key",
    ),
    t("user.create", "POST", "/v1/users", &[Admin], &[], true, "Create a person's or a service's account"),
    t("user.list", "GET", "/v1/users", &[Admin], &[], false, "List accounts"),
    t(
        "user.disable",
        "POST",
        "/v1/users/{username}/disable",
        &[Admin],
        &[],
        true,
        "Disable an account and revoke its tokens",
    ),
    t("user.set_role", "POST", "/v1/users/{username}/role", &[Admin], &[], true, "Change an account's role"),
    t("user.reset_password", "POST", "/v1/users/{username}/password", &[Admin], &[], true, "Set a new password"),
    t("user.sessions.list", "GET", "/v1/users/{username}/sessions", &[Admin], &[], false, "List a user's sessions"),
    t(
        "user.sessions.revoke",
        "POST",
        "/v1/users/{username}/sessions/revoke",
        &[Admin],
        &[],
        true,
        "End one or all of a user's sessions",
    ),
    t("join_token.create", "POST", "/v1/join-tokens", &[Admin], &[], true, "Create a bootstrap token for worker hosts"),
    t("join_token.list", "GET", "/v1/join-tokens", &[Admin], &[], false, "List bootstrap tokens"),
    t("join_token.revoke", "POST", "/v1/join-tokens/{id}/revoke", &[Admin], &[], true, "Revoke a bootstrap token"),
    t("node.list", "GET", "/v1/nodes", &[Admin, Operator, Engineer], &[], false, "List worker nodes"),
    t("node.get", "GET", "/v1/nodes/{id}", &[Admin, Operator, Engineer], &[], false, "Read a worker node"),
    t("node.drain", "POST", "/v1/nodes/{id}/drain", &[Admin], &[], true, "Stop giving a node new work"),
    t("node.remove", "POST", "/v1/nodes/{id}/remove", &[Admin], &[], true, "Remove a node; its certificate is refused"),
    t(
        "node.config.set",
        "PUT",
        "/v1/nodes/{id}/config",
        &[Admin],
        &[],
        true,
        "Set a node's configuration (new version)",
    ),
    t("task.create", "POST", "/v1/tasks", TASK_ROLES, &[], true, "Run a command as a sandboxed job on a worker"),
    t("task.list", "GET", "/v1/tasks", TASK_ROLES, &[], false, "List tasks by state"),
    t("task.get", "GET", "/v1/tasks/{id}", TASK_ROLES, &[], false, "Read a task and its attempts"),
    t("task.result", "GET", "/v1/tasks/{id}/result", TASK_ROLES, &[], false, "A finished task's output and exit code"),
    t("task.cancel", "POST", "/v1/tasks/{id}/cancel", TASK_ROLES, &[], true, "Cancel a task (kills a running job)"),
    t("lane.create", "POST", "/v1/lanes", &[Agent, Admin], &[], true, "Open an agent lane"),
    t("lane.get", "GET", "/v1/lanes/{id}", LANE_READERS, &[], false, "Read a lane"),
    t("lane.timeline", "GET", "/v1/lanes/{id}/timeline", LANE_READERS, &[], false, "A lane's audit timeline"),
    t("lane.checkpoint", "POST", "/v1/lanes/{id}/checkpoints", &[Agent, Admin], &[], true, "Record a checkpoint"),
    t("handoff.request", "POST", "/v1/lanes/{id}/handoffs", &[Agent, Admin], &[], true, "Ask a person to decide"),
    t("lane.decision", "GET", "/v1/lanes/{id}/decision", &[Agent, Admin], &[], false, "Long-poll a lane's decision"),
    t("events.submit", "POST", "/v1/events", &[Agent, Operator, Admin], &[], true, "Submit a v1 event envelope"),
    t("handoff.list", "GET", "/v1/handoffs", OPERATORS, &[], false, "The handoffs in the caller's queues"),
    t("handoff.get", "GET", "/v1/handoffs/{id}", OPERATORS, &[], false, "Read a handoff in the caller's queues"),
    t("handoff.decide", "POST", "/v1/handoffs/{id}/decision", OPERATORS, &[], true, "Decide a handoff"),
    t("lane.escalate", "POST", "/v1/lanes/{id}/escalate", OPERATORS, &[], true, "Escalate a lane"),
    t(
        "lane.assign_owner",
        "POST",
        "/v1/lanes/{id}/assign-owner",
        OPERATORS,
        &[],
        true,
        "Give a lane an escalation owner",
    ),
    t("lane.reassign_owner", "POST", "/v1/lanes/{id}/reassign-owner", OPERATORS, &[], true, "Change a lane's owner"),
    t("lane.owner", "GET", "/v1/lanes/{id}/owner", LANE_READERS, &[], false, "A lane's escalation owner"),
    t("lane.unblock", "POST", "/v1/lanes/{id}/unblock", OPERATORS, &[], true, "Unblock an escalated lane"),
    t("lane.override_close", "POST", "/v1/lanes/{id}/override-close", OPERATORS, &[], true, "Close a lane by hand"),
    t("admin.lanes.freeze", "POST", "/v1/admin/lanes/freeze", &[Admin], &[], true, "Refuse new lanes"),
    t("admin.lanes.unfreeze", "POST", "/v1/admin/lanes/unfreeze", &[Admin], &[], true, "Accept new lanes again"),
    t("dlq.list", "GET", "/v1/dlq", OPERATORS, &[], false, "Callback deliveries that failed every attempt"),
    t("dlq.replay", "POST", "/v1/dlq/{id}/replay", OPERATORS, &[], true, "Deliver a dead letter again"),
    t(
        "insights.handoffs",
        "GET",
        "/v1/insights/handoffs",
        &[Engineer, Admin],
        &[],
        false,
        "Handoff aggregates (no content)",
    ),
    t("auth.me", "GET", "/v1/me", ANY_ROLE, &[], false, "Who the server thinks the caller is"),
    t("tools.list", "GET", "/v1/tools", ANY_ROLE, &[], false, "The tools this caller may use"),
];

#[allow(clippy::too_many_arguments)]
const fn t(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    roles: &'static [Role],
    from_states: &'static [TicketState],
    mutating: bool,
    summary: &'static str,
) -> ToolSpec {
    ToolSpec { name, method, path, roles, from_states, mutating, summary }
}

/// The spec of a tool by name.
pub fn tool(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Checks role and the token's tool list for `tool`, then — when the call is about an
/// existing ticket — scope and, for technicians' commands, assignment. Fails closed.
pub fn authorize(principal: &Principal, spec: &ToolSpec, ticket: Option<&Ticket>) -> Result<(), Denied> {
    if !spec.roles.contains(&principal.role) {
        return Err(Denied::Role(format!("role {} may not use {}", principal.role.as_str(), spec.name)));
    }
    if let Some(tools) = &principal.tools
        && !tools.iter().any(|t| t == spec.name)
    {
        return Err(Denied::Tool(format!("this token may not use {}", spec.name)));
    }
    if let Some(ticket) = ticket {
        if !principal.in_scope(&ticket.account_id, &ticket.site_id) {
            return Err(Denied::Scope("ticket is outside the caller's account/site scope".into()));
        }
        if spec.mutating && principal.role == Technician && ticket.technician_id.as_deref() != Some(&principal.sub) {
            return Err(Denied::Role("only the assigned technician may do this".into()));
        }
    }
    Ok(())
}

/// Whether a caller may take a ticket action now, and if not, which rule says no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActionAvailability {
    pub tool: &'static str,
    pub method: &'static str,
    /// The route with the ticket id filled in.
    pub path: String,
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

/// Every ticket command with whether `principal` may use it on `ticket` now, and
/// why not when it may not. Read models show this; the API enforces the same rules.
pub fn ticket_actions(principal: &Principal, ticket: &Ticket) -> Vec<ActionAvailability> {
    TOOLS
        .iter()
        .filter(|s| s.mutating && !s.from_states.is_empty())
        .map(|spec| {
            let reason = match authorize(principal, spec, Some(ticket)) {
                Err(Denied::Role(m)) => Some(DisabledReason { policy: PolicyDimension::Role, message: m }),
                Err(Denied::Tool(m)) => Some(DisabledReason { policy: PolicyDimension::Tool, message: m }),
                Err(Denied::Scope(m)) => Some(DisabledReason { policy: PolicyDimension::Scope, message: m }),
                Ok(()) if !spec.from_states.contains(&ticket.state) => Some(DisabledReason {
                    policy: PolicyDimension::State,
                    message: format!("not allowed while the ticket is {}", ticket.state),
                }),
                Ok(()) => None,
            };
            ActionAvailability {
                tool: spec.name,
                method: spec.method,
                path: spec.path.replace("{id}", &ticket.id.to_string()),
                enabled: reason.is_none(),
                disabled_reason: reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's role × command table is the policy table, word for word.
    #[test]
    fn readme_role_table_matches_the_policy() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for spec in TOOLS {
            let roles = if spec.roles == ANY_ROLE {
                "any role".to_owned()
            } else {
                spec.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            };
            let row = format!("| `{}` | `{} {}` | {} |", spec.name, spec.method, spec.path, roles);
            assert!(readme.contains(&row), "README.md lacks the row:\n{row}");
        }
    }
}
