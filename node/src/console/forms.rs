//! What a person fills in to take an action: one form per tool, its fields named by
//! where they go in the route's JSON body (`window.start` becomes
//! `{"window": {"start": …}}`). The console's script builds the body from the form; the
//! route checks it as it checks any client's.

/// How a field is entered.
#[derive(Clone, Copy)]
pub enum Kind {
    /// One line of text.
    Text,
    /// Several lines of text.
    LongText,
    /// One of the listed values (the first is preselected unless it is empty).
    Choice(&'static [&'static str]),
    /// A date and time in the browser's zone, sent as RFC 3339.
    When,
    /// A whole number.
    Number,
    /// One of the signed-in operator's queues (or none).
    Queue,
    /// A list, one item per line (a command's arguments).
    Lines,
    /// A password (not shown as it is typed).
    Secret,
    /// A value the form always sends (a hidden field).
    Fixed(&'static str),
}

/// One field of an action's form.
pub struct Field {
    /// Where the value goes in the JSON body (dots for nesting).
    pub name: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// A line under the field (why it matters, who sees it).
    pub hint: &'static str,
}

const fn field(name: &'static str, label: &'static str, kind: Kind, required: bool) -> Field {
    Field { name, label, kind, required, hint: "" }
}

const PRIORITIES: &[&str] = &["", "EMERGENCY", "HIGH", "NORMAL", "LOW"];

/// The fields of `tool`'s body; empty for a tool whose body is `{}`. Tools the console
/// cannot form a body for (evidence, completion) have their own panels.
pub fn fields(tool: &str) -> &'static [Field] {
    const TRIAGE: &[Field] = &[
        field(
            "workflow_outcome",
            "Outcome",
            Kind::Choice(&["READY_TO_SCHEDULE", "TRIAGED", "APPROVAL_REQUIRED"]),
            true,
        ),
        field("priority", "Priority (unchanged if empty)", Kind::Choice(PRIORITIES), false),
        field("notes", "Notes", Kind::LongText, false),
    ];
    const PROPOSE: &[Field] = &[
        field("windows.0.start", "Window starts", Kind::When, true),
        field("windows.0.end", "Window ends", Kind::When, true),
    ];
    const CONFIRM: &[Field] = &[
        field("window.start", "Window starts", Kind::When, true),
        field("window.end", "Window ends", Kind::When, true),
    ];
    const DISPATCH: &[Field] = &[field("technician_id", "Technician", Kind::Text, true)];
    const BYPASS: &[Field] = &[
        field("technician_id", "Technician", Kind::Text, true),
        field("dispatch_mode", "", Kind::Fixed("EMERGENCY_BYPASS"), true),
        Field {
            hint: "This dispatch skips the schedule: the reason and your name go into the ticket's audit timeline, \
                   and a manager must confirm it.",
            ..field("reason", "Why the override", Kind::LongText, true)
        },
        Field {
            hint: "The manager who confirmed it by phone; else a manager confirms it from the ticket.",
            ..field("manager_confirmation", "Manager confirmation", Kind::Text, false)
        },
    ];
    const CHANGE: &[Field] =
        &[field("reason", "Why", Kind::LongText, true), field("change_summary", "What changes", Kind::LongText, true)];
    const DECIDE: &[Field] = &[
        field("decision", "Decision", Kind::Choice(&["approved", "denied"]), true),
        field("reason", "Reason", Kind::LongText, true),
    ];
    const VERIFY: &[Field] = &[field("notes", "Notes", Kind::LongText, false)];
    const INVOICE: &[Field] =
        &[field("amount_cents", "Amount (cents)", Kind::Number, true), field("currency", "Currency", Kind::Text, true)];
    const CANCEL: &[Field] = &[field("reason", "Reason", Kind::LongText, true)];
    const DECIDE_HANDOFF: &[Field] = &[
        field("action", "Decision", Kind::Choice(&["approve", "reject", "reroute", "add_context"]), true),
        Field {
            hint: "Kept with the decision; the agent receives it.",
            ..field("reason", "Reason", Kind::LongText, true)
        },
        Field { hint: "For reroute: one of your queues.", ..field("reroute_to", "Reroute to", Kind::Queue, false) },
        Field {
            hint: "For add context: a note the agent receives; the handoff stays open.",
            ..field("context.note", "Context note", Kind::LongText, false)
        },
    ];
    const LANE_REASON: &[Field] = &[field("reason", "Reason", Kind::LongText, true)];
    const OWNER: &[Field] =
        &[field("owner", "Owner", Kind::Text, true), field("reason", "Reason", Kind::LongText, true)];
    const OVERRIDE: &[Field] = &[Field {
        hint: "Must start with human_override: and say why; it stays in the lane's audit trail.",
        ..field("reason", "Reason", Kind::LongText, true)
    }];
    const RUN_TASK: &[Field] = &[
        Field {
            hint: "One argument per line; no shell unless you name one (sh, then -c, then the script).",
            ..field("command", "Command", Kind::Lines, true)
        },
        Field { hint: "Default: the node's sandbox image.", ..field("image", "Image", Kind::Text, false) },
        field("network_policy", "Network", Kind::Choice(&["none", "restricted"]), false),
        Field { hint: "Default 300.", ..field("timeout_seconds", "Timeout (seconds)", Kind::Number, false) },
        Field { hint: "Default 3.", ..field("max_attempts", "Attempts at most", Kind::Number, false) },
    ];
    const ROLES: &[&str] =
        &["dispatcher", "technician", "manager", "qa", "billing", "operator", "engineer", "agent", "admin"];
    const NEW_USER: &[Field] = &[
        field("username", "Username", Kind::Text, true),
        field("role", "Role", Kind::Choice(ROLES), true),
        Field { hint: "At least 12 characters.", ..field("password", "Password", Kind::Secret, false) },
        Field { hint: "One per line; empty: every account.", ..field("accounts", "Accounts", Kind::Lines, false) },
        Field { hint: "One per line; empty: every site.", ..field("sites", "Sites", Kind::Lines, false) },
        Field { hint: "Operators: the handoff queues they work.", ..field("queues", "Queues", Kind::Lines, false) },
    ];
    const SET_ROLE: &[Field] = &[Field {
        hint: "Their sessions end: they sign in again with the new role.",
        ..field("role", "New role", Kind::Choice(ROLES), true)
    }];
    const PASSWORD: &[Field] =
        &[Field { hint: "Their sessions end at once.", ..field("password", "New password", Kind::Secret, true) }];
    const JOIN_TOKEN: &[Field] = &[
        Field { hint: "Default 900 (15 minutes).", ..field("ttl_seconds", "Valid for (seconds)", Kind::Number, false) },
        Field { hint: "Default 1.", ..field("uses", "Nodes that may join with it", Kind::Number, false) },
    ];
    match tool {
        "user.create" => NEW_USER,
        "user.set_role" => SET_ROLE,
        "user.reset_password" => PASSWORD,
        "join_token.create" => JOIN_TOKEN,
        "task.create" => RUN_TASK,
        "ticket.triage" => TRIAGE,
        "schedule.propose" => PROPOSE,
        "schedule.confirm" => CONFIRM,
        "assignment.dispatch" => DISPATCH,
        BYPASS_FORM => BYPASS,
        "tech.request_change" => CHANGE,
        "approval.decide" => DECIDE,
        "qa.verify" => VERIFY,
        "billing.generate_invoice" => INVOICE,
        "ticket.cancel" => CANCEL,
        "handoff.decide" => DECIDE_HANDOFF,
        "lane.escalate" | "lane.unblock" => LANE_REASON,
        "lane.assign_owner" | "lane.reassign_owner" => OWNER,
        "lane.override_close" => OVERRIDE,
        _ => &[],
    }
}

/// The form of `assignment.dispatch` from TRIAGED: the emergency override of the schedule.
const BYPASS_FORM: &str = "assignment.dispatch#bypass";

/// Which form a ticket tool takes in `state` (its own, or a variant of it).
pub fn form_of<'a>(tool: &'a str, state: &str) -> &'a str {
    match (tool, state) {
        ("assignment.dispatch", "TRIAGED") => BYPASS_FORM,
        _ => tool,
    }
}

/// Tools that take something away at one press (no form to fill first): the console
/// asks for a second press.
pub fn asks_twice(tool: &str) -> bool {
    matches!(
        tool,
        "user.disable"
            | "user.sessions.revoke"
            | "join_token.revoke"
            | "admin.signing_keys.retire"
            | "node.drain"
            | "node.remove"
            | "task.cancel"
    )
}

/// Tools with a panel of their own on the ticket page rather than a form in a list.
pub fn has_panel(tool: &str) -> bool {
    matches!(tool, "closeout.add_evidence" | "tech.complete" | "assignment.confirm_bypass")
}

/// A person's words for a tool (`ticket.triage` → `Triage`).
pub fn label(tool: &str) -> &'static str {
    match tool {
        "ticket.triage" => "Triage",
        "schedule.propose" => "Propose a window",
        "schedule.confirm" => "Confirm the window",
        "assignment.dispatch" => "Dispatch",
        BYPASS_FORM => "Emergency dispatch (override)",
        "assignment.confirm_bypass" => "Confirm bypass",
        "tech.check_in" => "Check in",
        "tech.request_change" => "Request a change",
        "approval.decide" => "Decide approval",
        "closeout.add_evidence" => "Add evidence",
        "tech.complete" => "Complete",
        "qa.verify" => "Verify",
        "billing.generate_invoice" => "Invoice",
        "ticket.close" => "Close",
        "ticket.cancel" => "Cancel ticket",
        "handoff.decide" => "Decide",
        "lane.escalate" => "Escalate",
        "lane.assign_owner" => "Assign owner",
        "lane.reassign_owner" => "Reassign owner",
        "lane.unblock" => "Unblock",
        "lane.override_close" => "Override-close",
        "dlq.replay" => "Replay",
        "task.create" => "Run a task",
        "task.cancel" => "Cancel task",
        "node.drain" => "Drain",
        "node.remove" => "Remove",
        "user.create" => "Add a person or service",
        "user.set_role" => "Change role",
        "user.reset_password" => "Reset password",
        "user.disable" => "Disable",
        "user.sessions.revoke" => "End sessions",
        "join_token.create" => "Create a join token",
        "join_token.revoke" => "Revoke",
        "admin.signing_keys.rotate" => "Add a signing key",
        "admin.signing_keys.retire" => "Retire",
        _ => "Run",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mutating ticket tool has a form or a panel, and each form's fields are the
    /// route's body fields (so a field renamed in the API shows up here).
    #[test]
    fn every_ticket_command_can_be_formed() {
        let bodies = [
            (
                "ticket.triage",
                serde_json::to_value(crate::dto::ticket_commands::Triage {
                    workflow_outcome: crate::dto::ticket_commands::TriageOutcome::Triaged,
                    priority: Some(crate::dto::tickets::Priority::High),
                    notes: Some(String::new()),
                }),
            ),
            (
                "tech.request_change",
                serde_json::to_value(crate::dto::ticket_commands::RequestChange {
                    reason: String::new(),
                    change_summary: String::new(),
                }),
            ),
            ("ticket.cancel", serde_json::to_value(crate::dto::ticket_commands::Cancel { reason: String::new() })),
            (
                form_of("assignment.dispatch", "TRIAGED"),
                serde_json::to_value(crate::dto::ticket_commands::DispatchAssignment {
                    technician_id: String::new(),
                    dispatch_mode: None,
                    reason: None,
                    manager_confirmation: None,
                }),
            ),
        ];
        for (tool, body) in bodies {
            let body = body.unwrap();
            for f in fields(tool) {
                let top = f.name.split('.').next().unwrap();
                assert!(body.get(top).is_some(), "{tool}: field {} is not in the body {body}", f.name);
            }
        }
        for spec in actors::policy::TOOLS.iter().filter(|t| t.mutating && !t.from_states.is_empty()) {
            assert!(
                !fields(spec.name).is_empty()
                    || has_panel(spec.name)
                    || ["tech.check_in", "ticket.close"].contains(&spec.name),
                "{} has no form",
                spec.name
            );
            assert_ne!(label(spec.name), "Run", "{} has no label", spec.name);
        }
    }
}
