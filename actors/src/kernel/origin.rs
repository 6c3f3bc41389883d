//! Who caused a change, and the ids that tie it to its request and trace: every event
//! record carries them, so the timeline answers "who did this, through which tool".

use serde::Serialize;
use storage::{ActorRef, NewEvent};
use uuid::Uuid;

use crate::policy::{Principal, Role};

/// The audit origin of a command.
#[derive(Debug, Clone)]
pub struct Origin {
    pub actor: ActorRef,
    /// The authenticated caller, when a person or agent asked (policy checks read it).
    pub principal: Option<Principal>,
    pub tool: String,
    pub request_id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
}

impl Origin {
    /// The orchestrator itself (timers, joins, deliveries).
    pub fn system(tool: &str) -> Self {
        Self::of(ActorRef { kind: "system".into(), id: "orchestrator".into(), role: "system".into() }, tool)
    }

    /// A node speaking over its authenticated connection.
    pub fn node(id: &str, tool: &str) -> Self {
        Self::of(ActorRef { kind: "node".into(), id: id.into(), role: "node".into() }, tool)
    }

    /// An authenticated caller of the API.
    pub fn caller(principal: &Principal, tool: &str, request_id: &str) -> Self {
        let kind = if principal.role == Role::Agent { "agent" } else { "user" };
        Origin {
            actor: ActorRef { kind: kind.into(), id: principal.sub.clone(), role: principal.role.as_str().into() },
            principal: Some(principal.clone()),
            tool: tool.into(),
            request_id: request_id.into(),
            correlation_id: None,
            trace_id: None,
        }
    }

    fn of(actor: ActorRef, tool: &str) -> Self {
        Origin {
            actor,
            principal: None,
            tool: tool.into(),
            request_id: String::new(),
            correlation_id: None,
            trace_id: None,
        }
    }

    /// A log event of `kind` caused by this origin, with the entity's state before and
    /// after. `id` and `time_ms` come from the caller's injected ids and clock.
    pub fn event(
        &self,
        (id, time_ms): (Uuid, i64),
        kind: &str,
        (from, to): (Option<&str>, Option<&str>),
        payload: &impl Serialize,
    ) -> Result<NewEvent, serde_json::Error> {
        Ok(self.event_bytes((id, time_ms), kind, (from, to), serde_json::to_vec(payload)?))
    }

    /// [`Origin::event`] with a payload already encoded as JSON.
    pub fn event_bytes(
        &self,
        (id, time_ms): (Uuid, i64),
        kind: &str,
        (from, to): (Option<&str>, Option<&str>),
        payload: Vec<u8>,
    ) -> NewEvent {
        NewEvent {
            event_id: id.to_string(),
            time_ms,
            actor: self.actor.clone(),
            tool: self.tool.clone(),
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            trace_id: self.trace_id.clone(),
            kind: kind.into(),
            from_state: from.map(str::to_owned),
            to_state: to.map(str::to_owned),
            payload,
        }
    }
}
