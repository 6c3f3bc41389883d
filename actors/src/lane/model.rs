//! What a lane is: its states, handoffs, decisions, the commands it takes, the
//! events it records and why a command is refused. The rules are in `lifecycle.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The reason of an escalation by the first-response timer.
pub const SLA_MISSED: &str = "first-response SLA missed";

/// Where a lane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LaneStatus {
    Active,
    WaitingHuman,
    Blocked,
    Closed,
}

impl LaneStatus {
    /// The status's wire and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            LaneStatus::Active => "ACTIVE",
            LaneStatus::WaitingHuman => "WAITING_HUMAN",
            LaneStatus::Blocked => "BLOCKED",
            LaneStatus::Closed => "CLOSED",
        }
    }
}

/// Where a handoff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HandoffStatus {
    Open,
    Decided,
    Expired,
    Closed,
}

impl HandoffStatus {
    /// The status's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffStatus::Open => "OPEN",
            HandoffStatus::Decided => "DECIDED",
            HandoffStatus::Expired => "EXPIRED",
            HandoffStatus::Closed => "CLOSED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Decided, Self::Expired, Self::Closed].into_iter().find(|h| h.as_str() == s)
    }
}

/// What happens when a handoff's deadline passes undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutAction {
    Reject,
    Escalate,
}

/// An operator's answer to a handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    Approve,
    Reject,
    Reroute,
    AddContext,
}

impl DecisionAction {
    /// The action's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionAction::Approve => "approve",
            DecisionAction::Reject => "reject",
            DecisionAction::Reroute => "reroute",
            DecisionAction::AddContext => "add_context",
        }
    }
}

/// A point the agent can resume from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub state: Value,
    pub at_ms: i64,
}

/// What a handoff asks of people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextNote {
    pub by: String,
    pub at_ms: i64,
    pub context: Value,
}

/// A handoff and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub id: String,
    pub agent: String,
    pub ticket_id: Option<String>,
    pub status: LaneStatus,
    pub checkpoints: Vec<Checkpoint>,
    /// The current handoff (open), or the last one. Earlier ones are not held here (a
    /// lane's every command would copy and answer them): they move to the
    /// `store::PAST_HANDOFFS` index when the next is requested (read with
    /// `store::handoff_of` and `store::all_handoffs`).
    pub handoff: Option<Handoff>,
    /// Handoffs requested over the lane's life.
    pub handoffs: u32,
    /// Who owns the lane's escalation.
    pub owner: Option<String>,
    /// Where decisions are delivered (besides long-poll).
    pub callback_url: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Lane {
    /// The open handoff, if any.
    pub fn open_handoff(&self) -> Option<&Handoff> {
        self.handoff.as_ref().filter(|h| h.status == HandoffStatus::Open)
    }
}

/// Something that happened to a lane. Stored in the log as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LaneEvent {
    Created { agent: String, ticket_id: Option<String>, callback_url: Option<String> },
    CheckpointRecorded { checkpoint: Checkpoint },
    HandoffRequested { request: HandoffRequest },
    ContextAdded { handoff_id: String, note: ContextNote },
    Rerouted { handoff_id: String, queue: String, by: String, reason: String },
    HandoffDecided { decision: Decision },
    HandoffExpired { decision: Decision },
    Escalated { handoff_id: Option<String>, reason: String, by: String },
    OwnerAssigned { owner: String, by: String, reason: String },
    Unblocked { by: String, reason: String },
    Closed { by: String, reason: String },
}

impl LaneEvent {
    /// The event's kind as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            LaneEvent::Created { .. } => "lane.created",
            LaneEvent::CheckpointRecorded { .. } => "lane.checkpoint_recorded",
            LaneEvent::HandoffRequested { .. } => "handoff.requested",
            LaneEvent::ContextAdded { .. } => "handoff.context_added",
            LaneEvent::Rerouted { .. } => "handoff.rerouted",
            LaneEvent::HandoffDecided { .. } => "handoff.decided",
            LaneEvent::HandoffExpired { .. } => "handoff.expired",
            LaneEvent::Escalated { .. } => "lane.escalated",
            LaneEvent::OwnerAssigned { .. } => "lane.owner_assigned",
            LaneEvent::Unblocked { .. } => "lane.unblocked",
            LaneEvent::Closed { .. } => "lane.closed",
        }
    }
}

/// What is asked of a lane.
#[derive(Debug, Clone, PartialEq)]
pub enum LaneCommand {
    Create {
        agent: String,
        ticket_id: Option<String>,
        callback_url: Option<String>,
    },
    Checkpoint {
        name: String,
        state: Value,
        now_ms: i64,
    },
    RequestHandoff {
        request: HandoffRequest,
    },
    Decide {
        handoff_id: String,
        action: DecisionAction,
        reason: String,
        reroute_to: Option<String>,
        context: Option<Value>,
        by: String,
        now_ms: i64,
    },
    /// The first-response SLA of `handoff_id` came due.
    SlaDue {
        handoff_id: String,
        now_ms: i64,
    },
    /// The decision deadline of `handoff_id` came due.
    DeadlineDue {
        handoff_id: String,
        now_ms: i64,
    },
    Escalate {
        by: String,
        reason: String,
    },
    AssignOwner {
        owner: String,
        by: String,
        reason: String,
        reassign: bool,
    },
    Unblock {
        by: String,
        reason: String,
    },
    OverrideClose {
        by: String,
        reason: String,
    },
}

/// Why a command was refused. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaneError {
    #[error("lane not found")]
    NotFound,
    #[error("lane already exists")]
    Exists,
    #[error("the lane is closed")]
    Closed,
    #[error("checkpoint {0:?} was never recorded on this lane")]
    UnknownCheckpoint(String),
    #[error("the lane already has an open handoff")]
    HandoffOpen,
    #[error("handoff is {0}, not OPEN")]
    HandoffNotOpen(&'static str),
    #[error("no such handoff on this lane")]
    UnknownHandoff,
    #[error("{0}")]
    Invalid(String),
    #[error("the lane already has an escalation owner ({0}); reassign instead")]
    OwnerExists(String),
    #[error("the lane has no escalation owner yet; assign one first")]
    NoOwner,
    #[error("the lane is not blocked")]
    NotBlocked,
    /// A per-lane collection is full.
    #[error("the lane already holds {limit} {what}")]
    LimitReached { what: &'static str, limit: usize },
    /// Another handoff (of any lane) already has this id.
    #[error("handoff id {0:?} is already taken")]
    HandoffIdTaken(String),
}
