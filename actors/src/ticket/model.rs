//! What a ticket is: its states, the ticket itself, the commands it takes, the events
//! it records and why a command is refused. The rules over them are in `rules.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::policy::{Denied, PolicyDimension};

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    Emergency,
    High,
    #[default]
    Normal,
    Low,
}

/// A service window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// How a technician was dispatched: on schedule, or skipping it in an emergency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DispatchMode {
    #[default]
    Standard,
    EmergencyBypass,
}

/// Where a pending approval came from, which decides where approval leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStage {
    /// Raised at triage: approved → READY_TO_SCHEDULE, denied → CANCELLED.
    Triage,
    /// Raised by the technician on site: approved or denied → back to IN_PROGRESS.
    Work,
}

/// A manager's answer to a pending approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approved,
    Denied,
}

/// One piece of closeout evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub id: Uuid,
    pub kind: String,
    pub uri: String,
    pub evidence_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    pub added_by: String,
}

/// A technician's request to change the scope of the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    pub reason: String,
    pub change_summary: String,
}

/// What was billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub amount_cents: i64,
    pub currency: String,
}

/// The ticket as the API returns it and as its snapshot is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------- commands

/// Body of `POST /v1/tickets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTicket {
    pub account_id: String,
    pub site_id: String,
    pub incident_type: String,
    pub summary: String,
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// Where triage sends a new ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriageOutcome {
    Triaged,
    ReadyToSchedule,
    ApprovalRequired,
}

/// Body of `POST /v1/tickets/{id}/triage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triage {
    pub workflow_outcome: TriageOutcome,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Body of `POST /v1/tickets/{id}/schedule/propose`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposeSchedule {
    pub windows: Vec<Window>,
}

/// Body of `POST /v1/tickets/{id}/schedule/confirm`; the window must be one proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmSchedule {
    pub window: Window,
}

/// Body of `POST /v1/tickets/{id}/assignment/dispatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// Body of `POST /v1/tickets/{id}/tech/request-change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestChange {
    pub reason: String,
    pub change_summary: String,
}

/// Body of `POST /v1/tickets/{id}/approval/decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideApproval {
    pub decision: Decision,
    pub reason: String,
}

/// Body of `POST /v1/tickets/{id}/evidence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddEvidence {
    pub kind: String,
    pub uri: String,
    pub evidence_key: String,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// Body of `POST /v1/tickets/{id}/tech/complete`: the checklist as done on site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complete {
    pub checklist: BTreeMap<String, bool>,
    #[serde(default)]
    pub no_signature_reason: Option<String>,
}

/// Body of `POST /v1/tickets/{id}/qa/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Verify {
    #[serde(default)]
    pub notes: Option<String>,
}

/// Body of `POST /v1/tickets/{id}/billing/generate-invoice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateInvoice {
    pub amount_cents: i64,
    pub currency: String,
}

/// Body of `POST /v1/tickets/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Evidence items one ticket may hold.
pub const MAX_EVIDENCE: usize = 200;
