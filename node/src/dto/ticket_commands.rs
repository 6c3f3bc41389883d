//! The bodies of the ticket commands, as the API takes them.
//! Each type mirrors the domain type of the same name (see `dto/mod.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tickets::{ApprovalDecision, DispatchMode, Priority, Window};

/// Body of `POST /v1/tickets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateTicket {
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub account_id: String,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub site_id: String,
    pub incident_type: String,
    #[schema(schema_with = crate::dto::rules::non_blank)]
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
    #[schema(schema_with = crate::dto::rules::non_blank)]
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
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub change_summary: String,
}

/// Body of `POST /v1/tickets/{id}/approval/decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecideApproval {
    pub decision: ApprovalDecision,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
}

/// Body of `POST /v1/tickets/{id}/evidence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AddEvidence {
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub kind: String,
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub uri: String,
    #[schema(schema_with = crate::dto::rules::non_blank)]
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
    #[schema(schema_with = crate::dto::rules::non_blank)]
    pub reason: String,
}

// ------------------------------------------------------------- to and from the domain

impl From<actors::ticket::CreateTicket> for CreateTicket {
    fn from(v: actors::ticket::CreateTicket) -> Self {
        let actors::ticket::CreateTicket { account_id, site_id, incident_type, summary, priority } = v;
        CreateTicket { account_id, site_id, incident_type, summary, priority: priority.map(Into::into) }
    }
}

impl From<CreateTicket> for actors::ticket::CreateTicket {
    fn from(v: CreateTicket) -> Self {
        let CreateTicket { account_id, site_id, incident_type, summary, priority } = v;
        actors::ticket::CreateTicket { account_id, site_id, incident_type, summary, priority: priority.map(Into::into) }
    }
}

impl From<actors::ticket::TriageOutcome> for TriageOutcome {
    fn from(v: actors::ticket::TriageOutcome) -> Self {
        match v {
            actors::ticket::TriageOutcome::Triaged => TriageOutcome::Triaged,
            actors::ticket::TriageOutcome::ReadyToSchedule => TriageOutcome::ReadyToSchedule,
            actors::ticket::TriageOutcome::ApprovalRequired => TriageOutcome::ApprovalRequired,
        }
    }
}

impl From<TriageOutcome> for actors::ticket::TriageOutcome {
    fn from(v: TriageOutcome) -> Self {
        match v {
            TriageOutcome::Triaged => actors::ticket::TriageOutcome::Triaged,
            TriageOutcome::ReadyToSchedule => actors::ticket::TriageOutcome::ReadyToSchedule,
            TriageOutcome::ApprovalRequired => actors::ticket::TriageOutcome::ApprovalRequired,
        }
    }
}

impl From<actors::ticket::Triage> for Triage {
    fn from(v: actors::ticket::Triage) -> Self {
        let actors::ticket::Triage { workflow_outcome, priority, notes } = v;
        Triage { workflow_outcome: workflow_outcome.into(), priority: priority.map(Into::into), notes }
    }
}

impl From<Triage> for actors::ticket::Triage {
    fn from(v: Triage) -> Self {
        let Triage { workflow_outcome, priority, notes } = v;
        actors::ticket::Triage { workflow_outcome: workflow_outcome.into(), priority: priority.map(Into::into), notes }
    }
}

impl From<actors::ticket::ProposeSchedule> for ProposeSchedule {
    fn from(v: actors::ticket::ProposeSchedule) -> Self {
        let actors::ticket::ProposeSchedule { windows } = v;
        ProposeSchedule { windows: windows.into_iter().map(Into::into).collect() }
    }
}

impl From<ProposeSchedule> for actors::ticket::ProposeSchedule {
    fn from(v: ProposeSchedule) -> Self {
        let ProposeSchedule { windows } = v;
        actors::ticket::ProposeSchedule { windows: windows.into_iter().map(Into::into).collect() }
    }
}

impl From<actors::ticket::ConfirmSchedule> for ConfirmSchedule {
    fn from(v: actors::ticket::ConfirmSchedule) -> Self {
        let actors::ticket::ConfirmSchedule { window } = v;
        ConfirmSchedule { window: window.into() }
    }
}

impl From<ConfirmSchedule> for actors::ticket::ConfirmSchedule {
    fn from(v: ConfirmSchedule) -> Self {
        let ConfirmSchedule { window } = v;
        actors::ticket::ConfirmSchedule { window: window.into() }
    }
}

impl From<actors::ticket::DispatchAssignment> for DispatchAssignment {
    fn from(v: actors::ticket::DispatchAssignment) -> Self {
        let actors::ticket::DispatchAssignment { technician_id, dispatch_mode, reason, manager_confirmation } = v;
        DispatchAssignment { technician_id, dispatch_mode: dispatch_mode.map(Into::into), reason, manager_confirmation }
    }
}

impl From<DispatchAssignment> for actors::ticket::DispatchAssignment {
    fn from(v: DispatchAssignment) -> Self {
        let DispatchAssignment { technician_id, dispatch_mode, reason, manager_confirmation } = v;
        actors::ticket::DispatchAssignment {
            technician_id,
            dispatch_mode: dispatch_mode.map(Into::into),
            reason,
            manager_confirmation,
        }
    }
}

impl From<actors::ticket::Empty> for Empty {
    fn from(_: actors::ticket::Empty) -> Self {
        Empty {}
    }
}

impl From<Empty> for actors::ticket::Empty {
    fn from(_: Empty) -> Self {
        actors::ticket::Empty {}
    }
}

impl From<actors::ticket::RequestChange> for RequestChange {
    fn from(v: actors::ticket::RequestChange) -> Self {
        let actors::ticket::RequestChange { reason, change_summary } = v;
        RequestChange { reason, change_summary }
    }
}

impl From<RequestChange> for actors::ticket::RequestChange {
    fn from(v: RequestChange) -> Self {
        let RequestChange { reason, change_summary } = v;
        actors::ticket::RequestChange { reason, change_summary }
    }
}

impl From<actors::ticket::DecideApproval> for DecideApproval {
    fn from(v: actors::ticket::DecideApproval) -> Self {
        let actors::ticket::DecideApproval { decision, reason } = v;
        DecideApproval { decision: decision.into(), reason }
    }
}

impl From<DecideApproval> for actors::ticket::DecideApproval {
    fn from(v: DecideApproval) -> Self {
        let DecideApproval { decision, reason } = v;
        actors::ticket::DecideApproval { decision: decision.into(), reason }
    }
}

impl From<actors::ticket::AddEvidence> for AddEvidence {
    fn from(v: actors::ticket::AddEvidence) -> Self {
        let actors::ticket::AddEvidence { kind, uri, evidence_key, metadata } = v;
        AddEvidence { kind, uri, evidence_key, metadata }
    }
}

impl From<AddEvidence> for actors::ticket::AddEvidence {
    fn from(v: AddEvidence) -> Self {
        let AddEvidence { kind, uri, evidence_key, metadata } = v;
        actors::ticket::AddEvidence { kind, uri, evidence_key, metadata }
    }
}

impl From<actors::ticket::Complete> for Complete {
    fn from(v: actors::ticket::Complete) -> Self {
        let actors::ticket::Complete { checklist, no_signature_reason } = v;
        Complete { checklist, no_signature_reason }
    }
}

impl From<Complete> for actors::ticket::Complete {
    fn from(v: Complete) -> Self {
        let Complete { checklist, no_signature_reason } = v;
        actors::ticket::Complete { checklist, no_signature_reason }
    }
}

impl From<actors::ticket::Verify> for Verify {
    fn from(v: actors::ticket::Verify) -> Self {
        let actors::ticket::Verify { notes } = v;
        Verify { notes }
    }
}

impl From<Verify> for actors::ticket::Verify {
    fn from(v: Verify) -> Self {
        let Verify { notes } = v;
        actors::ticket::Verify { notes }
    }
}

impl From<actors::ticket::GenerateInvoice> for GenerateInvoice {
    fn from(v: actors::ticket::GenerateInvoice) -> Self {
        let actors::ticket::GenerateInvoice { amount_cents, currency } = v;
        GenerateInvoice { amount_cents, currency }
    }
}

impl From<GenerateInvoice> for actors::ticket::GenerateInvoice {
    fn from(v: GenerateInvoice) -> Self {
        let GenerateInvoice { amount_cents, currency } = v;
        actors::ticket::GenerateInvoice { amount_cents, currency }
    }
}

impl From<actors::ticket::Cancel> for Cancel {
    fn from(v: actors::ticket::Cancel) -> Self {
        let actors::ticket::Cancel { reason } = v;
        Cancel { reason }
    }
}

impl From<Cancel> for actors::ticket::Cancel {
    fn from(v: Cancel) -> Self {
        let Cancel { reason } = v;
        actors::ticket::Cancel { reason }
    }
}
