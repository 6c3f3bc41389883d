//! Tickets as the API speaks them: the ticket and its parts, closeout templates and standing, SLA standing.
//! Each type mirrors the domain type of the same name (see `dto/mod.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

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
pub enum ApprovalDecision {
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

/// What one incident type needs at closeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentTemplate {
    pub incident_type: String,
    pub description: String,
    pub required_evidence_keys: Vec<String>,
    pub checklist: Vec<String>,
}

/// A versioned set of templates, one per incident type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    pub version: String,
    pub templates: Vec<IncidentTemplate>,
}

/// Where a ticket stands against its closeout template. Lists are sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CloseoutStatus {
    pub ready: bool,
    pub required_evidence_keys: Vec<String>,
    pub present_evidence_keys: Vec<String>,
    pub missing_evidence_keys: Vec<String>,
    pub missing_checklist_items: Vec<String>,
    pub signature_present: bool,
    pub no_signature_reason: Option<String>,
    pub unresolvable_uris: Vec<String>,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlaStatus {
    OnTrack,
    /// Less than a quarter of the target time is left.
    AtRisk,
    Breached,
}

// ------------------------------------------------------------- to and from the domain

impl From<actors::ticket::TicketState> for TicketState {
    fn from(v: actors::ticket::TicketState) -> Self {
        match v {
            actors::ticket::TicketState::New => TicketState::New,
            actors::ticket::TicketState::Triaged => TicketState::Triaged,
            actors::ticket::TicketState::ReadyToSchedule => TicketState::ReadyToSchedule,
            actors::ticket::TicketState::ScheduleProposed => TicketState::ScheduleProposed,
            actors::ticket::TicketState::Scheduled => TicketState::Scheduled,
            actors::ticket::TicketState::Dispatched => TicketState::Dispatched,
            actors::ticket::TicketState::InProgress => TicketState::InProgress,
            actors::ticket::TicketState::ApprovalRequired => TicketState::ApprovalRequired,
            actors::ticket::TicketState::CompletedPendingVerification => TicketState::CompletedPendingVerification,
            actors::ticket::TicketState::Verified => TicketState::Verified,
            actors::ticket::TicketState::Invoiced => TicketState::Invoiced,
            actors::ticket::TicketState::Closed => TicketState::Closed,
            actors::ticket::TicketState::Cancelled => TicketState::Cancelled,
        }
    }
}

impl From<TicketState> for actors::ticket::TicketState {
    fn from(v: TicketState) -> Self {
        match v {
            TicketState::New => actors::ticket::TicketState::New,
            TicketState::Triaged => actors::ticket::TicketState::Triaged,
            TicketState::ReadyToSchedule => actors::ticket::TicketState::ReadyToSchedule,
            TicketState::ScheduleProposed => actors::ticket::TicketState::ScheduleProposed,
            TicketState::Scheduled => actors::ticket::TicketState::Scheduled,
            TicketState::Dispatched => actors::ticket::TicketState::Dispatched,
            TicketState::InProgress => actors::ticket::TicketState::InProgress,
            TicketState::ApprovalRequired => actors::ticket::TicketState::ApprovalRequired,
            TicketState::CompletedPendingVerification => actors::ticket::TicketState::CompletedPendingVerification,
            TicketState::Verified => actors::ticket::TicketState::Verified,
            TicketState::Invoiced => actors::ticket::TicketState::Invoiced,
            TicketState::Closed => actors::ticket::TicketState::Closed,
            TicketState::Cancelled => actors::ticket::TicketState::Cancelled,
        }
    }
}

impl From<actors::ticket::Priority> for Priority {
    fn from(v: actors::ticket::Priority) -> Self {
        match v {
            actors::ticket::Priority::Emergency => Priority::Emergency,
            actors::ticket::Priority::High => Priority::High,
            actors::ticket::Priority::Normal => Priority::Normal,
            actors::ticket::Priority::Low => Priority::Low,
        }
    }
}

impl From<Priority> for actors::ticket::Priority {
    fn from(v: Priority) -> Self {
        match v {
            Priority::Emergency => actors::ticket::Priority::Emergency,
            Priority::High => actors::ticket::Priority::High,
            Priority::Normal => actors::ticket::Priority::Normal,
            Priority::Low => actors::ticket::Priority::Low,
        }
    }
}

impl From<actors::ticket::Window> for Window {
    fn from(v: actors::ticket::Window) -> Self {
        let actors::ticket::Window { start, end } = v;
        Window { start, end }
    }
}

impl From<Window> for actors::ticket::Window {
    fn from(v: Window) -> Self {
        let Window { start, end } = v;
        actors::ticket::Window { start, end }
    }
}

impl From<actors::ticket::DispatchMode> for DispatchMode {
    fn from(v: actors::ticket::DispatchMode) -> Self {
        match v {
            actors::ticket::DispatchMode::Standard => DispatchMode::Standard,
            actors::ticket::DispatchMode::EmergencyBypass => DispatchMode::EmergencyBypass,
        }
    }
}

impl From<DispatchMode> for actors::ticket::DispatchMode {
    fn from(v: DispatchMode) -> Self {
        match v {
            DispatchMode::Standard => actors::ticket::DispatchMode::Standard,
            DispatchMode::EmergencyBypass => actors::ticket::DispatchMode::EmergencyBypass,
        }
    }
}

impl From<actors::ticket::ApprovalStage> for ApprovalStage {
    fn from(v: actors::ticket::ApprovalStage) -> Self {
        match v {
            actors::ticket::ApprovalStage::Triage => ApprovalStage::Triage,
            actors::ticket::ApprovalStage::Work => ApprovalStage::Work,
        }
    }
}

impl From<ApprovalStage> for actors::ticket::ApprovalStage {
    fn from(v: ApprovalStage) -> Self {
        match v {
            ApprovalStage::Triage => actors::ticket::ApprovalStage::Triage,
            ApprovalStage::Work => actors::ticket::ApprovalStage::Work,
        }
    }
}

impl From<actors::ticket::Decision> for ApprovalDecision {
    fn from(v: actors::ticket::Decision) -> Self {
        match v {
            actors::ticket::Decision::Approved => ApprovalDecision::Approved,
            actors::ticket::Decision::Denied => ApprovalDecision::Denied,
        }
    }
}

impl From<ApprovalDecision> for actors::ticket::Decision {
    fn from(v: ApprovalDecision) -> Self {
        match v {
            ApprovalDecision::Approved => actors::ticket::Decision::Approved,
            ApprovalDecision::Denied => actors::ticket::Decision::Denied,
        }
    }
}

impl From<actors::ticket::Evidence> for Evidence {
    fn from(v: actors::ticket::Evidence) -> Self {
        let actors::ticket::Evidence { id, kind, uri, evidence_key, metadata, added_at, added_by } = v;
        Evidence { id, kind, uri, evidence_key, metadata, added_at, added_by }
    }
}

impl From<Evidence> for actors::ticket::Evidence {
    fn from(v: Evidence) -> Self {
        let Evidence { id, kind, uri, evidence_key, metadata, added_at, added_by } = v;
        actors::ticket::Evidence { id, kind, uri, evidence_key, metadata, added_at, added_by }
    }
}

impl From<actors::ticket::ChangeRequest> for ChangeRequest {
    fn from(v: actors::ticket::ChangeRequest) -> Self {
        let actors::ticket::ChangeRequest { reason, change_summary } = v;
        ChangeRequest { reason, change_summary }
    }
}

impl From<ChangeRequest> for actors::ticket::ChangeRequest {
    fn from(v: ChangeRequest) -> Self {
        let ChangeRequest { reason, change_summary } = v;
        actors::ticket::ChangeRequest { reason, change_summary }
    }
}

impl From<actors::ticket::Invoice> for Invoice {
    fn from(v: actors::ticket::Invoice) -> Self {
        let actors::ticket::Invoice { amount_cents, currency } = v;
        Invoice { amount_cents, currency }
    }
}

impl From<Invoice> for actors::ticket::Invoice {
    fn from(v: Invoice) -> Self {
        let Invoice { amount_cents, currency } = v;
        actors::ticket::Invoice { amount_cents, currency }
    }
}

impl From<actors::ticket::Ticket> for Ticket {
    fn from(v: actors::ticket::Ticket) -> Self {
        let actors::ticket::Ticket {
            id,
            state,
            version,
            account_id,
            site_id,
            incident_type,
            summary,
            priority,
            triage_notes,
            proposed_windows,
            confirmed_window,
            technician_id,
            dispatch_mode,
            emergency_reason,
            manager_confirmation,
            approval_stage,
            change_request,
            evidence,
            checklist,
            no_signature_reason,
            verification_notes,
            invoice,
            cancel_reason,
            created_at,
            updated_at,
        } = v;
        Ticket {
            id,
            state: state.into(),
            version,
            account_id,
            site_id,
            incident_type,
            summary,
            priority: priority.into(),
            triage_notes,
            proposed_windows: proposed_windows.into_iter().map(Into::into).collect(),
            confirmed_window: confirmed_window.map(Into::into),
            technician_id,
            dispatch_mode: dispatch_mode.map(Into::into),
            emergency_reason,
            manager_confirmation,
            approval_stage: approval_stage.map(Into::into),
            change_request: change_request.map(Into::into),
            evidence: evidence.into_iter().map(Into::into).collect(),
            checklist,
            no_signature_reason,
            verification_notes,
            invoice: invoice.map(Into::into),
            cancel_reason,
            created_at,
            updated_at,
        }
    }
}

impl From<Ticket> for actors::ticket::Ticket {
    fn from(v: Ticket) -> Self {
        let Ticket {
            id,
            state,
            version,
            account_id,
            site_id,
            incident_type,
            summary,
            priority,
            triage_notes,
            proposed_windows,
            confirmed_window,
            technician_id,
            dispatch_mode,
            emergency_reason,
            manager_confirmation,
            approval_stage,
            change_request,
            evidence,
            checklist,
            no_signature_reason,
            verification_notes,
            invoice,
            cancel_reason,
            created_at,
            updated_at,
        } = v;
        actors::ticket::Ticket {
            id,
            state: state.into(),
            version,
            account_id,
            site_id,
            incident_type,
            summary,
            priority: priority.into(),
            triage_notes,
            proposed_windows: proposed_windows.into_iter().map(Into::into).collect(),
            confirmed_window: confirmed_window.map(Into::into),
            technician_id,
            dispatch_mode: dispatch_mode.map(Into::into),
            emergency_reason,
            manager_confirmation,
            approval_stage: approval_stage.map(Into::into),
            change_request: change_request.map(Into::into),
            evidence: evidence.into_iter().map(Into::into).collect(),
            checklist,
            no_signature_reason,
            verification_notes,
            invoice: invoice.map(Into::into),
            cancel_reason,
            created_at,
            updated_at,
        }
    }
}

impl From<actors::ticket::closeout::IncidentTemplate> for IncidentTemplate {
    fn from(v: actors::ticket::closeout::IncidentTemplate) -> Self {
        let actors::ticket::closeout::IncidentTemplate {
            incident_type,
            description,
            required_evidence_keys,
            checklist,
        } = v;
        IncidentTemplate { incident_type, description, required_evidence_keys, checklist }
    }
}

impl From<IncidentTemplate> for actors::ticket::closeout::IncidentTemplate {
    fn from(v: IncidentTemplate) -> Self {
        let IncidentTemplate { incident_type, description, required_evidence_keys, checklist } = v;
        actors::ticket::closeout::IncidentTemplate { incident_type, description, required_evidence_keys, checklist }
    }
}

impl From<actors::ticket::closeout::Templates> for Templates {
    fn from(v: actors::ticket::closeout::Templates) -> Self {
        let actors::ticket::closeout::Templates { version, templates } = v;
        Templates { version, templates: templates.into_iter().map(Into::into).collect() }
    }
}

impl From<Templates> for actors::ticket::closeout::Templates {
    fn from(v: Templates) -> Self {
        let Templates { version, templates } = v;
        actors::ticket::closeout::Templates { version, templates: templates.into_iter().map(Into::into).collect() }
    }
}

impl From<actors::ticket::closeout::CloseoutStatus> for CloseoutStatus {
    fn from(v: actors::ticket::closeout::CloseoutStatus) -> Self {
        let actors::ticket::closeout::CloseoutStatus {
            ready,
            required_evidence_keys,
            present_evidence_keys,
            missing_evidence_keys,
            missing_checklist_items,
            signature_present,
            no_signature_reason,
            unresolvable_uris,
        } = v;
        CloseoutStatus {
            ready,
            required_evidence_keys,
            present_evidence_keys,
            missing_evidence_keys,
            missing_checklist_items,
            signature_present,
            no_signature_reason,
            unresolvable_uris,
        }
    }
}

impl From<actors::ticket::sla::SlaStatus> for SlaStatus {
    fn from(v: actors::ticket::sla::SlaStatus) -> Self {
        match v {
            actors::ticket::sla::SlaStatus::OnTrack => SlaStatus::OnTrack,
            actors::ticket::sla::SlaStatus::AtRisk => SlaStatus::AtRisk,
            actors::ticket::sla::SlaStatus::Breached => SlaStatus::Breached,
        }
    }
}
