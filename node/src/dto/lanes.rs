//! Lanes and handoffs as the API speaks them.
//! Each type mirrors the domain type of the same name (see `dto/mod.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where a lane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LaneStatus {
    Active,
    WaitingHuman,
    Blocked,
    Closed,
}

/// Where a handoff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HandoffStatus {
    Open,
    Decided,
    Expired,
    Closed,
}

/// What happens when a handoff's deadline passes undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutAction {
    Reject,
    Escalate,
}

/// An operator's answer to a handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    Approve,
    Reject,
    Reroute,
    AddContext,
}

/// A point the agent can resume from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    pub name: String,
    pub state: Value,
    pub at_ms: i64,
}

/// What a handoff asks of people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HandoffRequest {
    pub handoff_id: String,
    pub checkpoint: String,
    pub trigger_class: String,
    pub reason: String,
    pub context: Value,
    pub queue: String,
    /// First response due (ms since the epoch).
    pub sla_due_ms: i64,
    /// Decision due (ms since the epoch).
    pub deadline_ms: i64,
    pub timeout_action: TimeoutAction,
}

/// How a handoff was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub handoff_id: String,
    pub action: DecisionAction,
    pub reason: String,
    /// Who decided (`system` when the deadline did).
    pub by: String,
    pub at_ms: i64,
    /// The checkpoint the lane resumes from.
    pub resume_from: String,
}

/// A note an operator added to an open handoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContextNote {
    pub by: String,
    pub at_ms: i64,
    pub context: Value,
}

/// A handoff and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Handoff {
    #[serde(flatten)]
    pub request: HandoffRequest,
    pub lane_id: String,
    pub status: HandoffStatus,
    pub requested_ms: i64,
    pub first_response_ms: Option<i64>,
    pub escalated: bool,
    pub notes: Vec<ContextNote>,
    pub decision: Option<Decision>,
}

/// An agent's lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lane {
    pub id: String,
    pub agent: String,
    pub ticket_id: Option<String>,
    pub status: LaneStatus,
    pub checkpoints: Vec<Checkpoint>,
    /// The current handoff (open), or the last one.
    pub handoff: Option<Handoff>,
    pub handoffs: u32,
    /// Who owns the lane's escalation.
    pub owner: Option<String>,
    /// Where decisions are delivered (besides long-poll).
    pub callback_url: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

// ------------------------------------------------------------- to and from the domain

impl From<actors::lane::lifecycle::LaneStatus> for LaneStatus {
    fn from(v: actors::lane::lifecycle::LaneStatus) -> Self {
        match v {
            actors::lane::lifecycle::LaneStatus::Active => LaneStatus::Active,
            actors::lane::lifecycle::LaneStatus::WaitingHuman => LaneStatus::WaitingHuman,
            actors::lane::lifecycle::LaneStatus::Blocked => LaneStatus::Blocked,
            actors::lane::lifecycle::LaneStatus::Closed => LaneStatus::Closed,
        }
    }
}

impl From<LaneStatus> for actors::lane::lifecycle::LaneStatus {
    fn from(v: LaneStatus) -> Self {
        match v {
            LaneStatus::Active => actors::lane::lifecycle::LaneStatus::Active,
            LaneStatus::WaitingHuman => actors::lane::lifecycle::LaneStatus::WaitingHuman,
            LaneStatus::Blocked => actors::lane::lifecycle::LaneStatus::Blocked,
            LaneStatus::Closed => actors::lane::lifecycle::LaneStatus::Closed,
        }
    }
}

impl From<actors::lane::lifecycle::HandoffStatus> for HandoffStatus {
    fn from(v: actors::lane::lifecycle::HandoffStatus) -> Self {
        match v {
            actors::lane::lifecycle::HandoffStatus::Open => HandoffStatus::Open,
            actors::lane::lifecycle::HandoffStatus::Decided => HandoffStatus::Decided,
            actors::lane::lifecycle::HandoffStatus::Expired => HandoffStatus::Expired,
            actors::lane::lifecycle::HandoffStatus::Closed => HandoffStatus::Closed,
        }
    }
}

impl From<HandoffStatus> for actors::lane::lifecycle::HandoffStatus {
    fn from(v: HandoffStatus) -> Self {
        match v {
            HandoffStatus::Open => actors::lane::lifecycle::HandoffStatus::Open,
            HandoffStatus::Decided => actors::lane::lifecycle::HandoffStatus::Decided,
            HandoffStatus::Expired => actors::lane::lifecycle::HandoffStatus::Expired,
            HandoffStatus::Closed => actors::lane::lifecycle::HandoffStatus::Closed,
        }
    }
}

impl From<actors::lane::lifecycle::TimeoutAction> for TimeoutAction {
    fn from(v: actors::lane::lifecycle::TimeoutAction) -> Self {
        match v {
            actors::lane::lifecycle::TimeoutAction::Reject => TimeoutAction::Reject,
            actors::lane::lifecycle::TimeoutAction::Escalate => TimeoutAction::Escalate,
        }
    }
}

impl From<TimeoutAction> for actors::lane::lifecycle::TimeoutAction {
    fn from(v: TimeoutAction) -> Self {
        match v {
            TimeoutAction::Reject => actors::lane::lifecycle::TimeoutAction::Reject,
            TimeoutAction::Escalate => actors::lane::lifecycle::TimeoutAction::Escalate,
        }
    }
}

impl From<actors::lane::lifecycle::DecisionAction> for DecisionAction {
    fn from(v: actors::lane::lifecycle::DecisionAction) -> Self {
        match v {
            actors::lane::lifecycle::DecisionAction::Approve => DecisionAction::Approve,
            actors::lane::lifecycle::DecisionAction::Reject => DecisionAction::Reject,
            actors::lane::lifecycle::DecisionAction::Reroute => DecisionAction::Reroute,
            actors::lane::lifecycle::DecisionAction::AddContext => DecisionAction::AddContext,
        }
    }
}

impl From<DecisionAction> for actors::lane::lifecycle::DecisionAction {
    fn from(v: DecisionAction) -> Self {
        match v {
            DecisionAction::Approve => actors::lane::lifecycle::DecisionAction::Approve,
            DecisionAction::Reject => actors::lane::lifecycle::DecisionAction::Reject,
            DecisionAction::Reroute => actors::lane::lifecycle::DecisionAction::Reroute,
            DecisionAction::AddContext => actors::lane::lifecycle::DecisionAction::AddContext,
        }
    }
}

impl From<actors::lane::lifecycle::Checkpoint> for Checkpoint {
    fn from(v: actors::lane::lifecycle::Checkpoint) -> Self {
        let actors::lane::lifecycle::Checkpoint { name, state, at_ms } = v;
        Checkpoint { name, state, at_ms }
    }
}

impl From<Checkpoint> for actors::lane::lifecycle::Checkpoint {
    fn from(v: Checkpoint) -> Self {
        let Checkpoint { name, state, at_ms } = v;
        actors::lane::lifecycle::Checkpoint { name, state, at_ms }
    }
}

impl From<actors::lane::lifecycle::HandoffRequest> for HandoffRequest {
    fn from(v: actors::lane::lifecycle::HandoffRequest) -> Self {
        let actors::lane::lifecycle::HandoffRequest {
            handoff_id,
            checkpoint,
            trigger_class,
            reason,
            context,
            queue,
            sla_due_ms,
            deadline_ms,
            timeout_action,
        } = v;
        HandoffRequest {
            handoff_id,
            checkpoint,
            trigger_class,
            reason,
            context,
            queue,
            sla_due_ms,
            deadline_ms,
            timeout_action: timeout_action.into(),
        }
    }
}

impl From<HandoffRequest> for actors::lane::lifecycle::HandoffRequest {
    fn from(v: HandoffRequest) -> Self {
        let HandoffRequest {
            handoff_id,
            checkpoint,
            trigger_class,
            reason,
            context,
            queue,
            sla_due_ms,
            deadline_ms,
            timeout_action,
        } = v;
        actors::lane::lifecycle::HandoffRequest {
            handoff_id,
            checkpoint,
            trigger_class,
            reason,
            context,
            queue,
            sla_due_ms,
            deadline_ms,
            timeout_action: timeout_action.into(),
        }
    }
}

impl From<actors::lane::lifecycle::Decision> for Decision {
    fn from(v: actors::lane::lifecycle::Decision) -> Self {
        let actors::lane::lifecycle::Decision { handoff_id, action, reason, by, at_ms, resume_from } = v;
        Decision { handoff_id, action: action.into(), reason, by, at_ms, resume_from }
    }
}

impl From<Decision> for actors::lane::lifecycle::Decision {
    fn from(v: Decision) -> Self {
        let Decision { handoff_id, action, reason, by, at_ms, resume_from } = v;
        actors::lane::lifecycle::Decision { handoff_id, action: action.into(), reason, by, at_ms, resume_from }
    }
}

impl From<actors::lane::lifecycle::ContextNote> for ContextNote {
    fn from(v: actors::lane::lifecycle::ContextNote) -> Self {
        let actors::lane::lifecycle::ContextNote { by, at_ms, context } = v;
        ContextNote { by, at_ms, context }
    }
}

impl From<ContextNote> for actors::lane::lifecycle::ContextNote {
    fn from(v: ContextNote) -> Self {
        let ContextNote { by, at_ms, context } = v;
        actors::lane::lifecycle::ContextNote { by, at_ms, context }
    }
}

impl From<actors::lane::lifecycle::Handoff> for Handoff {
    fn from(v: actors::lane::lifecycle::Handoff) -> Self {
        let actors::lane::lifecycle::Handoff {
            request,
            lane_id,
            status,
            requested_ms,
            first_response_ms,
            escalated,
            notes,
            decision,
        } = v;
        Handoff {
            request: request.into(),
            lane_id,
            status: status.into(),
            requested_ms,
            first_response_ms,
            escalated,
            notes: notes.into_iter().map(Into::into).collect(),
            decision: decision.map(Into::into),
        }
    }
}

impl From<Handoff> for actors::lane::lifecycle::Handoff {
    fn from(v: Handoff) -> Self {
        let Handoff { request, lane_id, status, requested_ms, first_response_ms, escalated, notes, decision } = v;
        actors::lane::lifecycle::Handoff {
            request: request.into(),
            lane_id,
            status: status.into(),
            requested_ms,
            first_response_ms,
            escalated,
            notes: notes.into_iter().map(Into::into).collect(),
            decision: decision.map(Into::into),
        }
    }
}

impl From<actors::lane::lifecycle::Lane> for Lane {
    fn from(v: actors::lane::lifecycle::Lane) -> Self {
        let actors::lane::lifecycle::Lane {
            id,
            agent,
            ticket_id,
            status,
            checkpoints,
            handoff,
            handoffs,
            owner,
            callback_url,
            created_ms,
            updated_ms,
        } = v;
        Lane {
            id,
            agent,
            ticket_id,
            status: status.into(),
            checkpoints: checkpoints.into_iter().map(Into::into).collect(),
            handoff: handoff.map(Into::into),
            handoffs,
            owner,
            callback_url,
            created_ms,
            updated_ms,
        }
    }
}

impl From<Lane> for actors::lane::lifecycle::Lane {
    fn from(v: Lane) -> Self {
        let Lane {
            id,
            agent,
            ticket_id,
            status,
            checkpoints,
            handoff,
            handoffs,
            owner,
            callback_url,
            created_ms,
            updated_ms,
        } = v;
        actors::lane::lifecycle::Lane {
            id,
            agent,
            ticket_id,
            status: status.into(),
            checkpoints: checkpoints.into_iter().map(Into::into).collect(),
            handoff: handoff.map(Into::into),
            handoffs,
            owner,
            callback_url,
            created_ms,
            updated_ms,
        }
    }
}
