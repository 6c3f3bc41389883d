//! An agent lane and its handoffs to people, as pure functions:
//! `decide(lane, command) → events` and `apply(lane, event) → lane`.
//!
//! ```text
//! lane:    ACTIVE ──handoff requested──► WAITING_HUMAN ──decided / timed out (reject)──► ACTIVE
//!                                          │  escalated (SLA missed, deadline, operator)
//!                                          ▼
//!                                        BLOCKED ──unblock──► WAITING_HUMAN | ACTIVE
//! any ──override-close ("human_override: …")──► CLOSED
//! handoff: OPEN ──approve | reject──► DECIDED     OPEN ──deadline, action reject──► EXPIRED
//!          OPEN ──reroute (another queue) | add_context──► OPEN      lane closed ──► CLOSED
//! ```
//!
//! A lane has at most one open handoff, and a handoff names a checkpoint the lane
//! recorded; the decision resumes the lane from it. Lanes never wait on each other:
//! each is its own stream and actor.

pub use super::model::*;

/// Distinct checkpoints a lane keeps.
pub const MAX_CHECKPOINTS: usize = 1_000;
/// Largest checkpoint state, as JSON.
pub const MAX_CHECKPOINT_STATE: usize = 64 * 1024;
/// Handoffs one lane may request over its life.
pub const MAX_HANDOFFS: usize = 1_000;

/// First response due this long after a handoff is requested, unless it asks otherwise.
pub const DEFAULT_SLA_SECONDS: u64 = 300;
/// Seconds a handoff's first response may be due in (up to 7 days).
pub const SLA_SECONDS: std::ops::RangeInclusive<u64> = 1..=7 * 86_400;
/// Seconds a handoff's decision may be due in (up to 30 days).
pub const DEADLINE_SECONDS: std::ops::RangeInclusive<u64> = 1..=30 * 86_400;
/// What an override-close's reason starts with (and then says why).
pub const HUMAN_OVERRIDE_PREFIX: &str = "human_override:";
/// Whether an override-close's reason starts with [`HUMAN_OVERRIDE_PREFIX`] and says why.
pub fn is_human_override(reason: &str) -> bool {
    reason.strip_prefix(HUMAN_OVERRIDE_PREFIX).is_some_and(|why| !why.is_empty())
}

/// The longest checkpoint name, in characters.
pub const MAX_CHECKPOINT_NAME: usize = 128;
/// Decision due this long after a handoff is requested, unless it asks otherwise.
pub const DEFAULT_DEADLINE_SECONDS: u64 = 3_600;

/// When a handoff requested at `now_ms` is due, as `(first response, decision)`
/// in ms: from what it asked, the defaults otherwise; at most 7 and 30 days away.
pub fn handoff_due(
    now_ms: i64,
    sla_seconds: Option<u64>,
    deadline_seconds: Option<u64>,
) -> Result<(i64, i64), LaneError> {
    let sla = sla_seconds.unwrap_or(DEFAULT_SLA_SECONDS);
    let deadline = deadline_seconds.unwrap_or(DEFAULT_DEADLINE_SECONDS);
    require(
        SLA_SECONDS.contains(&sla) && DEADLINE_SECONDS.contains(&deadline),
        "sla_seconds and deadline_seconds must be positive (at most 7 and 30 days)",
    )?;
    Ok((now_ms + sla as i64 * 1_000, now_ms + deadline as i64 * 1_000))
}

fn require(cond: bool, message: &str) -> Result<(), LaneError> {
    if cond { Ok(()) } else { Err(LaneError::Invalid(message.to_owned())) }
}

/// The events a command produces on `lane` (None before it exists).
pub fn decide(lane: Option<&Lane>, command: &LaneCommand) -> Result<Vec<LaneEvent>, LaneError> {
    use super::model::LaneCommand as C;
    use super::model::LaneEvent as E;
    let Some(lane) = lane else {
        return match command {
            C::Create { agent, ticket_id, callback_url } => {
                require(!agent.trim().is_empty(), "agent must not be empty")?;
                Ok(vec![E::Created {
                    agent: agent.clone(),
                    ticket_id: ticket_id.clone(),
                    callback_url: callback_url.clone(),
                }])
            }
            _ => Err(LaneError::NotFound),
        };
    };
    let closed = lane.status == LaneStatus::Closed;
    // Timers of a handoff that is no longer open, or of another handoff, do nothing.
    let open = |id: &str| lane.open_handoff().filter(|h| h.request.handoff_id == id);
    Ok(match command {
        C::Create { .. } => return Err(LaneError::Exists),
        C::SlaDue { handoff_id, now_ms } => match open(handoff_id) {
            Some(h) if h.first_response_ms.is_none() && !h.escalated && *now_ms >= h.request.sla_due_ms => {
                vec![E::Escalated {
                    handoff_id: Some(handoff_id.clone()),
                    reason: SLA_MISSED.into(),
                    by: "system".into(),
                }]
            }
            _ => vec![],
        },
        C::DeadlineDue { handoff_id, now_ms } => deadline_due(lane, handoff_id, *now_ms),
        _ if closed => return Err(LaneError::Closed),
        C::Checkpoint { name, state, now_ms } => checkpoint(lane, name, state, *now_ms)?,
        C::RequestHandoff { request } => request_handoff(lane, request)?,
        C::Decide { .. } => decide_handoff(lane, command)?,
        C::Escalate { by, reason } => {
            require(!reason.trim().is_empty(), "escalation needs a reason")?;
            vec![E::Escalated {
                handoff_id: lane.open_handoff().map(|h| h.request.handoff_id.clone()),
                reason: reason.clone(),
                by: by.clone(),
            }]
        }
        C::AssignOwner { owner, by, reason, reassign } => {
            require(!owner.trim().is_empty() && !reason.trim().is_empty(), "owner and reason are required")?;
            match (&lane.owner, reassign) {
                (Some(o), false) => return Err(LaneError::OwnerExists(o.clone())),
                (None, true) => return Err(LaneError::NoOwner),
                _ => vec![E::OwnerAssigned { owner: owner.clone(), by: by.clone(), reason: reason.clone() }],
            }
        }
        C::Unblock { by, reason } => {
            require(!reason.trim().is_empty(), "unblock needs a reason")?;
            if lane.status != LaneStatus::Blocked {
                return Err(LaneError::NotBlocked);
            }
            vec![E::Unblocked { by: by.clone(), reason: reason.clone() }]
        }
        C::OverrideClose { by, reason } => {
            require(is_human_override(reason), "the reason must start with human_override: and say why")?;
            vec![E::Closed { by: by.clone(), reason: reason.clone() }]
        }
    })
}

/// A decision deadline came due: expire (reject) or escalate the handoff if still open.
fn deadline_due(lane: &Lane, handoff_id: &str, now_ms: i64) -> Vec<LaneEvent> {
    let Some(h) = lane.open_handoff().filter(|h| h.request.handoff_id == handoff_id) else { return vec![] };
    if now_ms < h.request.deadline_ms {
        return vec![];
    }
    match h.request.timeout_action {
        TimeoutAction::Reject => vec![LaneEvent::HandoffExpired {
            decision: Decision {
                handoff_id: handoff_id.to_owned(),
                action: DecisionAction::Reject,
                reason: "deadline passed undecided".into(),
                by: "system".into(),
                at_ms: now_ms,
                resume_from: h.request.checkpoint.clone(),
            },
        }],
        TimeoutAction::Escalate if !h.escalated => vec![LaneEvent::Escalated {
            handoff_id: Some(handoff_id.to_owned()),
            reason: "deadline passed undecided".into(),
            by: "system".into(),
        }],
        TimeoutAction::Escalate => vec![],
    }
}

fn checkpoint(lane: &Lane, name: &str, state: &serde_json::Value, now_ms: i64) -> Result<Vec<LaneEvent>, LaneError> {
    require(
        !name.trim().is_empty() && name.chars().count() <= MAX_CHECKPOINT_NAME,
        "checkpoint name must be 1..=128 characters, not all whitespace",
    )?;
    let state_len = serde_json::to_vec(state).map_or(usize::MAX, |v| v.len());
    require(state_len <= MAX_CHECKPOINT_STATE, "checkpoint state must be at most 65536 bytes of JSON")?;
    let known = lane.checkpoints.iter().any(|c| c.name == name);
    if !known && lane.checkpoints.len() >= MAX_CHECKPOINTS {
        return Err(LaneError::LimitReached { what: "checkpoints", limit: MAX_CHECKPOINTS });
    }
    Ok(vec![LaneEvent::CheckpointRecorded {
        checkpoint: Checkpoint { name: name.to_owned(), state: state.clone(), at_ms: now_ms },
    }])
}

fn request_handoff(lane: &Lane, request: &HandoffRequest) -> Result<Vec<LaneEvent>, LaneError> {
    if lane.open_handoff().is_some() {
        return Err(LaneError::HandoffOpen);
    }
    if lane.handoffs as usize >= MAX_HANDOFFS {
        return Err(LaneError::LimitReached { what: "handoffs", limit: MAX_HANDOFFS });
    }
    if !lane.checkpoints.iter().any(|c| c.name == request.checkpoint) {
        return Err(LaneError::UnknownCheckpoint(request.checkpoint.clone()));
    }
    require(!request.queue.trim().is_empty(), "queue must not be empty")?;
    require(!request.trigger_class.trim().is_empty(), "trigger_class must not be empty")?;
    require(request.deadline_ms >= request.sla_due_ms, "the deadline cannot come before the SLA")?;
    Ok(vec![LaneEvent::HandoffRequested { request: request.clone() }])
}

/// A person's answer to the open handoff: context, a reroute, or the decision.
fn decide_handoff(lane: &Lane, command: &LaneCommand) -> Result<Vec<LaneEvent>, LaneError> {
    use super::model::LaneEvent as E;
    let LaneCommand::Decide { handoff_id, action, reason, reroute_to, context, by, now_ms } = command else {
        return Ok(vec![]);
    };
    let h = match &lane.handoff {
        Some(h) if h.request.handoff_id == *handoff_id => h,
        _ => return Err(LaneError::UnknownHandoff),
    };
    if h.status != HandoffStatus::Open {
        return Err(LaneError::HandoffNotOpen(h.status.as_str()));
    }
    require(!reason.trim().is_empty(), "a decision needs a reason")?;
    Ok(match action {
        DecisionAction::AddContext => {
            let context = context.clone().ok_or_else(|| LaneError::Invalid("add_context needs context".into()))?;
            vec![E::ContextAdded {
                handoff_id: handoff_id.clone(),
                note: ContextNote { by: by.clone(), at_ms: *now_ms, context },
            }]
        }
        DecisionAction::Reroute => {
            let queue = reroute_to
                .clone()
                .filter(|q| !q.trim().is_empty())
                .ok_or_else(|| LaneError::Invalid("reroute needs reroute_to".into()))?;
            require(queue != h.request.queue, "reroute_to is the handoff's queue already")?;
            vec![E::Rerouted { handoff_id: handoff_id.clone(), queue, by: by.clone(), reason: reason.clone() }]
        }
        DecisionAction::Approve | DecisionAction::Reject => vec![E::HandoffDecided {
            decision: Decision {
                handoff_id: handoff_id.clone(),
                action: *action,
                reason: reason.clone(),
                by: by.clone(),
                at_ms: *now_ms,
                resume_from: h.request.checkpoint.clone(),
            },
        }],
    })
}

/// The lane after `event`, at `now_ms`.
pub fn apply(lane: Option<Lane>, id: &str, now_ms: i64, event: &LaneEvent) -> Option<Lane> {
    use super::model::LaneEvent as E;
    if let E::Created { agent, ticket_id, callback_url } = event {
        return Some(Lane {
            id: id.to_owned(),
            agent: agent.clone(),
            ticket_id: ticket_id.clone(),
            status: LaneStatus::Active,
            checkpoints: Vec::new(),
            handoff: None,
            handoffs: 0,
            owner: None,
            callback_url: callback_url.clone(),
            created_ms: now_ms,
            updated_ms: now_ms,
        });
    }
    let mut l = lane?;
    l.updated_ms = now_ms;
    fold(&mut l, now_ms, event);
    Some(l)
}

/// What an event changes on an existing lane (`now_ms` is the event's time).
fn fold(l: &mut Lane, now_ms: i64, event: &LaneEvent) {
    use super::model::LaneEvent as E;
    let first_response = |h: &mut Handoff| {
        h.first_response_ms.get_or_insert(now_ms);
    };
    match event {
        E::Created { .. } => {}
        E::CheckpointRecorded { checkpoint } => {
            l.checkpoints.retain(|c| c.name != checkpoint.name);
            l.checkpoints.push(checkpoint.clone());
        }
        E::HandoffRequested { request } => {
            l.handoff = Some(Handoff {
                request: request.clone(),
                lane_id: l.id.clone(),
                status: HandoffStatus::Open,
                requested_ms: now_ms,
                first_response_ms: None,
                escalated: false,
                notes: Vec::new(),
                decision: None,
            });
            l.handoffs += 1;
            l.status = LaneStatus::WaitingHuman;
        }
        E::ContextAdded { note, .. } => {
            if let Some(h) = l.handoff.as_mut() {
                first_response(h);
                h.notes.push(note.clone());
            }
        }
        E::Rerouted { queue, .. } => {
            if let Some(h) = l.handoff.as_mut() {
                first_response(h);
                h.request.queue = queue.clone();
            }
        }
        E::HandoffDecided { decision } | E::HandoffExpired { decision } => {
            if let Some(h) = l.handoff.as_mut() {
                if matches!(event, E::HandoffDecided { .. }) {
                    first_response(h);
                    h.status = HandoffStatus::Decided;
                } else {
                    h.status = HandoffStatus::Expired;
                }
                h.decision = Some(decision.clone());
            }
            l.status = LaneStatus::Active;
        }
        E::Escalated { handoff_id, .. } => {
            if let Some(h) = l.handoff.as_mut().filter(|h| Some(&h.request.handoff_id) == handoff_id.as_ref()) {
                h.escalated = true;
            }
            l.status = LaneStatus::Blocked;
        }
        E::OwnerAssigned { owner, .. } => l.owner = Some(owner.clone()),
        E::Unblocked { .. } => {
            l.status = if l.open_handoff().is_some() { LaneStatus::WaitingHuman } else { LaneStatus::Active };
        }
        E::Closed { .. } => {
            if let Some(h) = l.handoff.as_mut().filter(|h| h.status == HandoffStatus::Open) {
                h.status = HandoffStatus::Closed;
            }
            l.status = LaneStatus::Closed;
        }
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
