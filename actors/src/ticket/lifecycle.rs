//! The ticket lifecycle as two pure functions:
//! `decide(ticket, command, context) -> events` checks policy, state and closeout
//! rules and says what happened; `apply(ticket, event) -> ticket` folds an event
//! into the ticket. Replaying a stream through `apply` rebuilds the ticket exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::closeout::{self, Templates};
use crate::policy::{self, Denied, PolicyDimension, Principal};

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketState {
    New,
    Triaged,
    ReadyToSchedule,
    ScheduleProposed,
    Scheduled,
    Dispatched,
    InProgress,
    ApprovalRequired,
    CompletedPendingVerification,
    Verified,
    Invoiced,
    Closed,
    Cancelled,
}

impl TicketState {
    /// Every state, in lifecycle order.
    pub const ALL: [TicketState; 13] = [
        Self::New,
        Self::Triaged,
        Self::ReadyToSchedule,
        Self::ScheduleProposed,
        Self::Scheduled,
        Self::Dispatched,
        Self::InProgress,
        Self::ApprovalRequired,
        Self::CompletedPendingVerification,
        Self::Verified,
        Self::Invoiced,
        Self::Closed,
        Self::Cancelled,
    ];

    /// The wire name, e.g. `READY_TO_SCHEDULE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Triaged => "TRIAGED",
            Self::ReadyToSchedule => "READY_TO_SCHEDULE",
            Self::ScheduleProposed => "SCHEDULE_PROPOSED",
            Self::Scheduled => "SCHEDULED",
            Self::Dispatched => "DISPATCHED",
            Self::InProgress => "IN_PROGRESS",
            Self::ApprovalRequired => "APPROVAL_REQUIRED",
            Self::CompletedPendingVerification => "COMPLETED_PENDING_VERIFICATION",
            Self::Verified => "VERIFIED",
            Self::Invoiced => "INVOICED",
            Self::Closed => "CLOSED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// CLOSED and CANCELLED: nothing can happen to the ticket any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Closed | Self::Cancelled)
    }

    /// The state with this wire name (query strings, stored indexes).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for TicketState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Urgency; sets the SLA target the cockpit counts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    Emergency,
    High,
    #[default]
    Normal,
    Low,
}

/// A service window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Window {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub end: OffsetDateTime,
}

/// How a technician was dispatched: on schedule, or skipping it in an emergency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DispatchMode {
    #[default]
    Standard,
    EmergencyBypass,
}

/// Where a pending approval came from, which decides where approval leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStage {
    /// Raised at triage: approved → READY_TO_SCHEDULE, denied → CANCELLED.
    Triage,
    /// Raised by the technician on site: approved or denied → back to IN_PROGRESS.
    Work,
}

/// A manager's answer to a pending approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approved,
    Denied,
}

/// One piece of closeout evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evidence {
    pub id: Uuid,
    pub kind: String,
    pub uri: String,
    pub evidence_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub added_at: OffsetDateTime,
    pub added_by: String,
}

/// A technician's request to change the scope of the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangeRequest {
    pub reason: String,
    pub change_summary: String,
}

/// What was billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    pub amount_cents: i64,
    pub currency: String,
}

/// The ticket as the API returns it and as its snapshot is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ticket {
    pub id: Uuid,
    pub state: TicketState,
    /// Number of events in the ticket's stream; grows by one per change.
    pub version: u64,
    pub account_id: String,
    pub site_id: String,
    pub incident_type: String,
    pub summary: String,
    pub priority: Priority,
    #[serde(default)]
    pub triage_notes: Option<String>,
    #[serde(default)]
    pub proposed_windows: Vec<Window>,
    #[serde(default)]
    pub confirmed_window: Option<Window>,
    #[serde(default)]
    pub technician_id: Option<String>,
    #[serde(default)]
    pub dispatch_mode: Option<DispatchMode>,
    #[serde(default)]
    pub emergency_reason: Option<String>,
    #[serde(default)]
    pub manager_confirmation: Option<String>,
    #[serde(default)]
    pub approval_stage: Option<ApprovalStage>,
    #[serde(default)]
    pub change_request: Option<ChangeRequest>,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub checklist: BTreeMap<String, bool>,
    #[serde(default)]
    pub no_signature_reason: Option<String>,
    #[serde(default)]
    pub verification_notes: Option<String>,
    #[serde(default)]
    pub invoice: Option<Invoice>,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------- commands

/// Body of `POST /v1/tickets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateTicket {
    pub account_id: String,
    pub site_id: String,
    pub incident_type: String,
    pub summary: String,
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// Where triage sends a new ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriageOutcome {
    Triaged,
    ReadyToSchedule,
    ApprovalRequired,
}

/// Body of `POST /v1/tickets/{id}/triage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Triage {
    pub workflow_outcome: TriageOutcome,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Body of `POST /v1/tickets/{id}/schedule/propose`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProposeSchedule {
    pub windows: Vec<Window>,
}

/// Body of `POST /v1/tickets/{id}/schedule/confirm`; the window must be one proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfirmSchedule {
    pub window: Window,
}

/// Body of `POST /v1/tickets/{id}/assignment/dispatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DispatchAssignment {
    pub technician_id: String,
    #[serde(default)]
    pub dispatch_mode: Option<DispatchMode>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Id of the manager who confirmed an emergency bypass.
    #[serde(default)]
    pub manager_confirmation: Option<String>,
}

/// A body with no fields (`{}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Empty {}

/// Body of `POST /v1/tickets/{id}/tech/request-change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestChange {
    pub reason: String,
    pub change_summary: String,
}

/// Body of `POST /v1/tickets/{id}/approval/decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecideApproval {
    pub decision: Decision,
    pub reason: String,
}

/// Body of `POST /v1/tickets/{id}/evidence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AddEvidence {
    pub kind: String,
    pub uri: String,
    pub evidence_key: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Body of `POST /v1/tickets/{id}/tech/complete`: the checklist as done on site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Complete {
    pub checklist: BTreeMap<String, bool>,
    #[serde(default)]
    pub no_signature_reason: Option<String>,
}

/// Body of `POST /v1/tickets/{id}/qa/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Verify {
    #[serde(default)]
    pub notes: Option<String>,
}

/// Body of `POST /v1/tickets/{id}/billing/generate-invoice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GenerateInvoice {
    pub amount_cents: i64,
    pub currency: String,
}

/// Body of `POST /v1/tickets/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cancel {
    pub reason: String,
}

/// Everything one can ask of a ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum TicketCommand {
    Create(CreateTicket),
    Triage(Triage),
    ProposeSchedule(ProposeSchedule),
    ConfirmSchedule(ConfirmSchedule),
    Dispatch(DispatchAssignment),
    CheckIn(Empty),
    RequestChange(RequestChange),
    DecideApproval(DecideApproval),
    AddEvidence(AddEvidence),
    Complete(Complete),
    Verify(Verify),
    GenerateInvoice(GenerateInvoice),
    Close(Empty),
    Cancel(Cancel),
}

impl TicketCommand {
    /// The tool name this command is known by in the policy table.
    pub fn tool(&self) -> &'static str {
        match self {
            Self::Create(_) => "ticket.create",
            Self::Triage(_) => "ticket.triage",
            Self::ProposeSchedule(_) => "schedule.propose",
            Self::ConfirmSchedule(_) => "schedule.confirm",
            Self::Dispatch(_) => "assignment.dispatch",
            Self::CheckIn(_) => "tech.check_in",
            Self::RequestChange(_) => "tech.request_change",
            Self::DecideApproval(_) => "approval.decide",
            Self::AddEvidence(_) => "closeout.add_evidence",
            Self::Complete(_) => "tech.complete",
            Self::Verify(_) => "qa.verify",
            Self::GenerateInvoice(_) => "billing.generate_invoice",
            Self::Close(_) => "ticket.close",
            Self::Cancel(_) => "ticket.cancel",
        }
    }
}

// ---------------------------------------------------------------- events

/// What happened to a ticket. Stored as JSON in the event payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TicketEvent {
    Created {
        account_id: String,
        site_id: String,
        incident_type: String,
        summary: String,
        priority: Priority,
    },
    Triaged {
        outcome: TicketState,
        priority: Option<Priority>,
        notes: Option<String>,
    },
    ScheduleProposed {
        windows: Vec<Window>,
    },
    ScheduleConfirmed {
        window: Window,
    },
    Dispatched {
        technician_id: String,
        mode: DispatchMode,
        reason: Option<String>,
        manager_confirmation: Option<String>,
    },
    CheckedIn {},
    ChangeRequested {
        reason: String,
        change_summary: String,
    },
    ApprovalDecided {
        decision: Decision,
        reason: String,
        to: TicketState,
    },
    EvidenceAdded {
        evidence: Evidence,
    },
    Completed {
        checklist: BTreeMap<String, bool>,
        no_signature_reason: Option<String>,
    },
    Verified {
        notes: Option<String>,
    },
    Invoiced {
        amount_cents: i64,
        currency: String,
    },
    Closed {},
    Cancelled {
        reason: String,
    },
}

impl TicketEvent {
    /// The event kind as stored in the log, e.g. `ticket.created`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "ticket.created",
            Self::Triaged { .. } => "ticket.triaged",
            Self::ScheduleProposed { .. } => "ticket.schedule_proposed",
            Self::ScheduleConfirmed { .. } => "ticket.schedule_confirmed",
            Self::Dispatched { .. } => "ticket.dispatched",
            Self::CheckedIn {} => "ticket.checked_in",
            Self::ChangeRequested { .. } => "ticket.change_requested",
            Self::ApprovalDecided { .. } => "ticket.approval_decided",
            Self::EvidenceAdded { .. } => "ticket.evidence_added",
            Self::Completed { .. } => "ticket.completed",
            Self::Verified { .. } => "ticket.verified",
            Self::Invoiced { .. } => "ticket.invoiced",
            Self::Closed {} => "ticket.closed",
            Self::Cancelled { .. } => "ticket.cancelled",
        }
    }
}

// ---------------------------------------------------------------- errors

/// Why a command was refused. Nothing is written for a refused command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("{0}")]
    Denied(PolicyDenied),
    #[error("{message}")]
    Validation { message: String, field: Option<String> },
    #[error("cannot go from {from} to {to}")]
    InvalidTransition { from: TicketState, to: TicketState },
    #[error("closeout requirements incomplete")]
    CloseoutIncomplete { missing_evidence_keys: Vec<String>, missing_checklist_items: Vec<String> },
    #[error("signature evidence or no_signature_reason is required")]
    MissingSignature,
    #[error("evidence references do not resolve")]
    InvalidEvidenceReference { uris: Vec<String> },
}

/// A policy refusal with the dimension that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyDenied {
    pub dimension: PolicyDimension,
    pub message: String,
}

impl From<Denied> for TicketError {
    fn from(d: Denied) -> Self {
        let (dimension, message) = match d {
            Denied::Role(m) => (PolicyDimension::Role, m),
            Denied::Tool(m) => (PolicyDimension::Tool, m),
            Denied::Scope(m) => (PolicyDimension::Scope, m),
        };
        TicketError::Denied(PolicyDenied { dimension, message })
    }
}

fn invalid(field: &str, message: impl Into<String>) -> TicketError {
    TicketError::Validation { message: message.into(), field: Some(field.to_owned()) }
}

/// Evidence items one ticket may hold.
pub const MAX_EVIDENCE: usize = 200;

fn required(field: &str, value: &str) -> Result<(), TicketError> {
    if value.trim().is_empty() {
        return Err(invalid(field, format!("{field} must not be empty")));
    }
    Ok(())
}

// ---------------------------------------------------------------- decide

/// Everything `decide` may consult besides the ticket and the command.
pub struct DecideContext<'a> {
    pub principal: &'a Principal,
    pub now: OffsetDateTime,
    pub ticket_id: Uuid,
    pub templates: &'a Templates,
    /// Whether an evidence URI resolves to an intact blob.
    pub resolves: &'a dyn Fn(&str) -> bool,
}

/// Checks `command` against the ticket (None before creation) and answers with the
/// events it causes, or why it is refused.
pub fn decide(
    ticket: Option<&Ticket>,
    command: &TicketCommand,
    cx: &DecideContext<'_>,
) -> Result<Vec<TicketEvent>, TicketError> {
    let spec = policy::tool(command.tool()).expect("every command has a row in the policy table");
    use TicketCommand as C;
    use TicketEvent as E;
    use TicketState as S;

    let TicketCommand::Create(c) = command else {
        let t = ticket.ok_or(TicketError::NotFound)?;
        policy::authorize(cx.principal, spec, Some(t))?;
        let allowed = spec.from_states.contains(&t.state);
        let transition_to = |to: TicketState| -> Result<(), TicketError> {
            if allowed { Ok(()) } else { Err(TicketError::InvalidTransition { from: t.state, to }) }
        };
        return Ok(vec![match command {
            C::Create(_) => unreachable!("handled above"),
            C::Triage(c) => {
                let outcome = match c.workflow_outcome {
                    TriageOutcome::Triaged => S::Triaged,
                    TriageOutcome::ReadyToSchedule => S::ReadyToSchedule,
                    TriageOutcome::ApprovalRequired => S::ApprovalRequired,
                };
                transition_to(outcome)?;
                E::Triaged { outcome, priority: c.priority, notes: c.notes.clone() }
            }
            C::ProposeSchedule(c) => {
                transition_to(S::ScheduleProposed)?;
                if c.windows.is_empty() {
                    return Err(invalid("windows", "propose at least one window"));
                }
                if let Some(w) = c.windows.iter().find(|w| w.start >= w.end) {
                    return Err(invalid(
                        "windows",
                        format!("window starting {} does not end after it starts", w.start),
                    ));
                }
                E::ScheduleProposed { windows: c.windows.clone() }
            }
            C::ConfirmSchedule(c) => {
                transition_to(S::Scheduled)?;
                if !t.proposed_windows.contains(&c.window) {
                    return Err(invalid("window", "window is not one of the proposed windows"));
                }
                E::ScheduleConfirmed { window: c.window.clone() }
            }
            C::Dispatch(c) => {
                let mode = c.dispatch_mode.unwrap_or_default();
                // TRIAGED → DISPATCHED is only open to an emergency bypass.
                if !allowed || (t.state == S::Triaged && mode != DispatchMode::EmergencyBypass) {
                    return Err(TicketError::InvalidTransition { from: t.state, to: S::Dispatched });
                }
                required("technician_id", &c.technician_id)?;
                if mode == DispatchMode::EmergencyBypass {
                    required("reason", c.reason.as_deref().unwrap_or(""))?;
                    required("manager_confirmation", c.manager_confirmation.as_deref().unwrap_or(""))?;
                }
                E::Dispatched {
                    technician_id: c.technician_id.clone(),
                    mode,
                    reason: c.reason.clone(),
                    manager_confirmation: c.manager_confirmation.clone(),
                }
            }
            C::CheckIn(_) => {
                transition_to(S::InProgress)?;
                E::CheckedIn {}
            }
            C::RequestChange(c) => {
                transition_to(S::ApprovalRequired)?;
                required("reason", &c.reason)?;
                required("change_summary", &c.change_summary)?;
                E::ChangeRequested { reason: c.reason.clone(), change_summary: c.change_summary.clone() }
            }
            C::DecideApproval(c) => {
                let to = match (t.approval_stage, c.decision) {
                    (Some(ApprovalStage::Triage), Decision::Approved) => S::ReadyToSchedule,
                    (Some(ApprovalStage::Triage), Decision::Denied) => S::Cancelled,
                    (_, _) => S::InProgress,
                };
                transition_to(to)?;
                required("reason", &c.reason)?;
                E::ApprovalDecided { decision: c.decision, reason: c.reason.clone(), to }
            }
            C::AddEvidence(c) => {
                transition_to(t.state)?;
                if t.evidence.len() >= MAX_EVIDENCE {
                    return Err(invalid("evidence", format!("a ticket holds at most {MAX_EVIDENCE} evidence items")));
                }
                required("kind", &c.kind)?;
                required("uri", &c.uri)?;
                required("evidence_key", &c.evidence_key)?;
                E::EvidenceAdded {
                    evidence: Evidence {
                        id: Uuid::new_v5(&cx.ticket_id, format!("{}#{}", t.version + 1, c.uri).as_bytes()),
                        kind: c.kind.clone(),
                        uri: c.uri.clone(),
                        evidence_key: c.evidence_key.clone(),
                        metadata: c.metadata.clone(),
                        added_at: cx.now,
                        added_by: cx.principal.sub.clone(),
                    },
                }
            }
            C::Complete(c) => {
                transition_to(S::CompletedPendingVerification)?;
                closeout::gate(t, &c.checklist, c.no_signature_reason.as_deref(), cx.templates, cx.resolves)?;
                E::Completed { checklist: c.checklist.clone(), no_signature_reason: c.no_signature_reason.clone() }
            }
            C::Verify(c) => {
                transition_to(S::Verified)?;
                // Evidence can change (or rot on disk) after completion: check again.
                closeout::gate(t, &t.checklist, t.no_signature_reason.as_deref(), cx.templates, cx.resolves)?;
                E::Verified { notes: c.notes.clone() }
            }
            C::GenerateInvoice(c) => {
                transition_to(S::Invoiced)?;
                if c.amount_cents < 0 {
                    return Err(invalid("amount_cents", "amount_cents must not be negative"));
                }
                if c.currency.len() != 3 || !c.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(invalid("currency", "currency must be a three-letter ISO 4217 code, e.g. USD"));
                }
                E::Invoiced { amount_cents: c.amount_cents, currency: c.currency.clone() }
            }
            C::Close(_) => {
                transition_to(S::Closed)?;
                E::Closed {}
            }
            C::Cancel(c) => {
                transition_to(S::Cancelled)?;
                required("reason", &c.reason)?;
                E::Cancelled { reason: c.reason.clone() }
            }
        }]);
    };

    // Creation: no ticket yet; scope is checked against the requested account and site.
    policy::authorize(cx.principal, spec, None)?;
    if ticket.is_some() {
        return Err(TicketError::InvalidTransition { from: ticket.map_or(S::New, |t| t.state), to: S::New });
    }
    required("account_id", &c.account_id)?;
    required("site_id", &c.site_id)?;
    required("summary", &c.summary)?;
    if !cx.principal.in_scope(&c.account_id, &c.site_id) {
        return Err(Denied::Scope("account/site is outside the caller's scope".into()).into());
    }
    if cx.templates.get(&c.incident_type).is_none() {
        return Err(invalid(
            "incident_type",
            format!("unknown incident_type {:?}; known: {}", c.incident_type, cx.templates.names().join(", ")),
        ));
    }
    Ok(vec![E::Created {
        account_id: c.account_id.clone(),
        site_id: c.site_id.clone(),
        incident_type: c.incident_type.clone(),
        summary: c.summary.clone(),
        priority: c.priority.unwrap_or_default(),
    }])
}

// ---------------------------------------------------------------- apply

/// Folds one event into the ticket. `seq` is the event's position in the stream.
/// An event that cannot apply (anything but `Created` before creation) leaves the
/// input unchanged; `decide` never produces one.
pub fn apply(ticket: Option<Ticket>, id: Uuid, seq: u64, at: OffsetDateTime, event: &TicketEvent) -> Option<Ticket> {
    use TicketEvent as E;
    use TicketState as S;
    let mut t = match (ticket, event) {
        (None, E::Created { account_id, site_id, incident_type, summary, priority }) => {
            return Some(Ticket {
                id,
                state: S::New,
                version: seq,
                account_id: account_id.clone(),
                site_id: site_id.clone(),
                incident_type: incident_type.clone(),
                summary: summary.clone(),
                priority: *priority,
                triage_notes: None,
                proposed_windows: Vec::new(),
                confirmed_window: None,
                technician_id: None,
                dispatch_mode: None,
                emergency_reason: None,
                manager_confirmation: None,
                approval_stage: None,
                change_request: None,
                evidence: Vec::new(),
                checklist: BTreeMap::new(),
                no_signature_reason: None,
                verification_notes: None,
                invoice: None,
                cancel_reason: None,
                created_at: at,
                updated_at: at,
            });
        }
        (None, _) => return None,
        (Some(t), _) => t,
    };
    match event {
        E::Created { .. } => return Some(t),
        E::Triaged { outcome, priority, notes } => {
            t.state = *outcome;
            if let Some(p) = priority {
                t.priority = *p;
            }
            t.triage_notes = notes.clone();
            if *outcome == S::ApprovalRequired {
                t.approval_stage = Some(ApprovalStage::Triage);
            }
        }
        E::ScheduleProposed { windows } => {
            t.state = S::ScheduleProposed;
            t.proposed_windows = windows.clone();
        }
        E::ScheduleConfirmed { window } => {
            t.state = S::Scheduled;
            t.confirmed_window = Some(window.clone());
        }
        E::Dispatched { technician_id, mode, reason, manager_confirmation } => {
            t.state = S::Dispatched;
            t.technician_id = Some(technician_id.clone());
            t.dispatch_mode = Some(*mode);
            if *mode == DispatchMode::EmergencyBypass {
                t.emergency_reason = reason.clone();
                t.manager_confirmation = manager_confirmation.clone();
            }
        }
        E::CheckedIn {} => t.state = S::InProgress,
        E::ChangeRequested { reason, change_summary } => {
            t.state = S::ApprovalRequired;
            t.approval_stage = Some(ApprovalStage::Work);
            t.change_request = Some(ChangeRequest { reason: reason.clone(), change_summary: change_summary.clone() });
        }
        E::ApprovalDecided { to, .. } => {
            t.state = *to;
            t.approval_stage = None;
        }
        E::EvidenceAdded { evidence } => t.evidence.push(evidence.clone()),
        E::Completed { checklist, no_signature_reason } => {
            t.state = S::CompletedPendingVerification;
            t.checklist = checklist.clone();
            t.no_signature_reason = no_signature_reason.clone();
        }
        E::Verified { notes } => {
            t.state = S::Verified;
            t.verification_notes = notes.clone();
        }
        E::Invoiced { amount_cents, currency } => {
            t.state = S::Invoiced;
            t.invoice = Some(Invoice { amount_cents: *amount_cents, currency: currency.clone() });
        }
        E::Closed {} => t.state = S::Closed,
        E::Cancelled { reason } => {
            t.state = S::Cancelled;
            t.cancel_reason = Some(reason.clone());
        }
    }
    t.version = seq;
    t.updated_at = at;
    Some(t)
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
