//! The one policy table: which tools exist, the route each maps to, which roles may
//! call them and from which ticket states. The API enforces it, the tool catalogue
//! and the cockpit's action lists are read from it, so they cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::ticket::{Ticket, TicketState};

/// A caller's role, from the `role` claim of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One tool: a named command or read, the roles that may use it and the ticket
/// states it is allowed from. Which route serves it is the route table's business
/// (the route's OpenAPI operation id is the tool's name).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    pub roles: &'static [Role],
    /// States the ticket must be in; empty for reads and creation.
    pub from_states: &'static [TicketState],
    /// Whether the tool changes state.
    pub mutating: bool,
    /// Whether the tool's command runs on the kernel with an idempotency key: its route
    /// requires an `Idempotency-Key`, and a retry with the same key and body replays the
    /// first answer.
    pub keyed: bool,
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
/// Every role (reads anyone may make).
pub const ANY_ROLE: &[Role] = &Role::ALL;
const TASK_ROLES: &[Role] = &[Operator, Admin, Agent];
const OPERATORS: &[Role] = &[Operator, Admin];
const LANE_READERS: &[Role] = &[Agent, Operator, Admin];

/// The closed catalogue. A tool not listed here does not exist.
pub const TOOLS: &[ToolSpec] = &[
    t("ticket.create", &[Dispatcher, Agent, Admin], &[], true, "Open a work order").keyed(),
    t("ticket.triage", &[Dispatcher, Agent], &[S::New], true, "Triage a new ticket").keyed(),
    t("schedule.propose", &[Dispatcher, Agent], &[S::ReadyToSchedule, S::Triaged], true, "Propose service windows")
        .keyed(),
    t("schedule.confirm", &[Dispatcher, Agent], &[S::ScheduleProposed], true, "Confirm one proposed window").keyed(),
    t(
        "assignment.dispatch",
        &[Dispatcher, Manager],
        &[S::Scheduled, S::Triaged],
        true,
        "Dispatch a technician (TRIAGED only as an emergency bypass)",
    )
    .keyed(),
    t(
        "assignment.confirm_bypass",
        &[Manager],
        &[S::Triaged],
        false,
        "Confirm an emergency bypass (a manager, for another person's dispatch)",
    ),
    t("tech.check_in", &[Technician], &[S::Dispatched], true, "Technician arrives on site").keyed(),
    t("tech.request_change", &[Technician], &[S::InProgress], true, "Ask a manager to approve a change of scope")
        .keyed(),
    t("approval.decide", &[Manager], &[S::ApprovalRequired], true, "Approve or deny a pending approval").keyed(),
    t(
        "closeout.add_evidence",
        &[Technician, Agent],
        &[S::Dispatched, S::InProgress, S::ApprovalRequired, S::CompletedPendingVerification],
        true,
        "Attach evidence",
    )
    .keyed(),
    t("tech.complete", &[Technician], &[S::InProgress], true, "Finish the work once closeout is ready").keyed(),
    t("qa.verify", &[Qa, Manager], &[S::CompletedPendingVerification], true, "Verify completed work").keyed(),
    t("billing.generate_invoice", &[Billing], &[S::Verified], true, "Invoice verified work").keyed(),
    t("ticket.close", &[Billing, Manager], &[S::Invoiced], true, "Close an invoiced ticket").keyed(),
    t("ticket.cancel", &[Dispatcher, Manager], OPEN, true, "Cancel an open ticket").keyed(),
    t("ticket.get", ANY_ROLE, &[], false, "Read a ticket"),
    t("ticket.list", ANY_ROLE, &[], false, "List tickets by state and site"),
    t("ticket.timeline", ANY_ROLE, &[], false, "Read a ticket's audit timeline"),
    t("ticket.evidence", ANY_ROLE, &[], false, "List a ticket's evidence"),
    t("blob.upload", &[Technician, Agent, Dispatcher, Admin], &[], true, "Upload an evidence file"),
    t("incident_templates.list", ANY_ROLE, &[], false, "Closeout templates by incident type"),
    t("dispatcher.cockpit", &[Dispatcher, Manager, Agent, Admin], &[], false, "Dispatcher queue with SLA and actions"),
    t("tech.job_packet", ANY_ROLE, &[], false, "Technician job packet"),
    t("admin.tokens.create", &[Admin], &[], true, "Mint an access token"),
    t("admin.tokens.list", &[Admin], &[], false, "List minted tokens"),
    t("admin.tokens.revoke", &[Admin], &[], true, "Revoke a minted token"),
    t("admin.signing_keys.retire", &[Admin], &[], true, "Retire a signing key no live token needs"),
    t("admin.signing_keys.rotate", &[Admin], &[], true, "Add a new token signing key"),
    t("admin.audit.verify", &[Admin], &[], false, "Re-compute every hash chain and check the global order"),
    t("admin.backup", &[Admin], &[], false, "A consistent backup of the running orchestrator"),
    t("user.create", &[Admin], &[], true, "Create a person's or a service's account"),
    t("user.list", &[Admin], &[], false, "List accounts"),
    t("user.disable", &[Admin], &[], true, "Disable an account and revoke its tokens"),
    t("user.set_role", &[Admin], &[], true, "Change an account's role"),
    t("user.reset_password", &[Admin], &[], true, "Set a new password"),
    t("user.sessions.list", &[Admin], &[], false, "List a user's sessions"),
    t("user.sessions.revoke", &[Admin], &[], true, "End one or all of a user's sessions"),
    t("join_token.create", &[Admin], &[], true, "Create a bootstrap token for worker hosts"),
    t("join_token.list", &[Admin], &[], false, "List bootstrap tokens"),
    t("join_token.revoke", &[Admin], &[], true, "Revoke a bootstrap token"),
    t("node.list", &[Admin, Operator, Engineer], &[], false, "List worker nodes"),
    t("node.get", &[Admin, Operator, Engineer], &[], false, "Read a worker node"),
    t("node.drain", &[Admin], &[], true, "Stop giving a node new work"),
    t("node.remove", &[Admin], &[], true, "Remove a node; its certificate is refused"),
    t("node.config.set", &[Admin], &[], true, "Set a node's configuration (new version)"),
    t("task.create", TASK_ROLES, &[], true, "Run a command as a sandboxed job on a worker").keyed(),
    t("task.list", TASK_ROLES, &[], false, "List tasks by state"),
    t("task.get", TASK_ROLES, &[], false, "Read a task and its attempts"),
    t("task.result", TASK_ROLES, &[], false, "A finished task's output and exit code"),
    t("task.cancel", TASK_ROLES, &[], true, "Cancel a task (kills a running job)"),
    t("lane.open", &[Agent, Admin], &[], true, "Open an agent lane").keyed(),
    t("lane.get", LANE_READERS, &[], false, "Read a lane"),
    t("lane.timeline", LANE_READERS, &[], false, "A lane's audit timeline"),
    t("lane.checkpoint", &[Agent, Admin], &[], true, "Record a checkpoint").keyed(),
    t("handoff.request", &[Agent, Admin], &[], true, "Ask a person to decide").keyed(),
    t(
        "handoff.await_decision",
        &[Agent, Admin],
        &[],
        false,
        "Wait (bounded) for the decision on a lane's latest handoff",
    ),
    t("events.submit", &[Agent, Operator, Admin], &[], true, "Submit a v1 event envelope"),
    t("handoff.list", OPERATORS, &[], false, "The handoffs in the caller's queues"),
    t("handoff.get", OPERATORS, &[], false, "Read a handoff in the caller's queues"),
    t("handoff.decide", OPERATORS, &[], true, "Decide a handoff").keyed(),
    t("lane.escalate", OPERATORS, &[], true, "Escalate a lane").keyed(),
    t("lane.assign_owner", OPERATORS, &[], true, "Give a lane an escalation owner").keyed(),
    t("lane.reassign_owner", OPERATORS, &[], true, "Change a lane's owner").keyed(),
    t("lane.owner", LANE_READERS, &[], false, "A lane's escalation owner"),
    t("lane.unblock", OPERATORS, &[], true, "Unblock an escalated lane").keyed(),
    t("lane.override_close", OPERATORS, &[], true, "Close a lane by hand").keyed(),
    t("admin.lanes.freeze", &[Admin], &[], true, "Refuse new lanes"),
    t("admin.lanes.unfreeze", &[Admin], &[], true, "Accept new lanes again"),
    t("events.stream", ANY_ROLE, &[], false, "Live events the caller may read, resumable (Server-Sent Events)"),
    t("dlq.list", OPERATORS, &[], false, "Callback deliveries that failed every attempt"),
    t("dlq.replay", OPERATORS, &[], true, "Deliver a dead letter again"),
    t("insights.handoffs", &[Engineer, Admin], &[], false, "Handoff aggregates (no content)"),
    t("auth.me", ANY_ROLE, &[], false, "Who the server thinks the caller is"),
    t("tools.list", ANY_ROLE, &[], false, "The tools this caller may use"),
];

const fn t(
    name: &'static str,
    roles: &'static [Role],
    from_states: &'static [TicketState],
    mutating: bool,
    summary: &'static str,
) -> ToolSpec {
    ToolSpec { name, roles, from_states, mutating, keyed: false, summary }
}

impl ToolSpec {
    /// The same tool, run with an idempotency key (see [`ToolSpec::keyed`]).
    const fn keyed(self) -> Self {
        ToolSpec { keyed: true, ..self }
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionAvailability {
    pub tool: &'static str,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<DisabledReason>,
}

/// The rule that disables an action, as shown to the person who cannot take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
            ActionAvailability { tool: spec.name, enabled: reason.is_none(), disabled_reason: reason }
        })
        .collect()
}
