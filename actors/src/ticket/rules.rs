//! The ticket lifecycle as two pure functions:
//! `decide(ticket, command, context) -> events` checks policy, state and closeout
//! rules and says what happened; `apply(ticket, event) -> ticket` folds an event
//! into the ticket. Replaying a stream through `apply` rebuilds the ticket exactly.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::closeout::{self, Templates};
use super::model::*;
use crate::policy::{self, Denied, Principal};

// ---------------------------------------------------------------- decide

fn invalid(field: &str, message: impl Into<String>) -> TicketError {
    TicketError::Validation { message: message.into(), field: Some(field.to_owned()) }
}

fn required(field: &str, value: &str) -> Result<(), TicketError> {
    if value.trim().is_empty() {
        return Err(invalid(field, format!("{field} must not be empty")));
    }
    Ok(())
}

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
    let spec = policy::tool(command.tool())
        .ok_or_else(|| invalid("tool", format!("{} has no row in the policy table", command.tool())))?;
    let TicketCommand::Create(c) = command else {
        let t = ticket.ok_or(TicketError::NotFound)?;
        policy::authorize(cx.principal, spec, Some(t))?;
        let gate = Gate { from: t.state, allowed: spec.from_states.contains(&t.state) };
        return Ok(vec![change(t, command, &gate, cx)?]);
    };
    // Creation: no ticket yet; scope is checked against the requested account and site.
    policy::authorize(cx.principal, spec, None)?;
    if let Some(t) = ticket {
        return Err(TicketError::InvalidTransition { from: t.state, to: TicketState::New });
    }
    create(c, cx)
}

/// Whether the command's tool may move the ticket out of its current state.
struct Gate {
    from: TicketState,
    allowed: bool,
}

impl Gate {
    fn to(&self, to: TicketState) -> Result<(), TicketError> {
        if self.allowed { Ok(()) } else { Err(TicketError::InvalidTransition { from: self.from, to }) }
    }
}

/// The event a command causes on an existing ticket.
fn change(
    t: &Ticket,
    command: &TicketCommand,
    gate: &Gate,
    cx: &DecideContext<'_>,
) -> Result<TicketEvent, TicketError> {
    use TicketCommand as C;
    use TicketEvent as E;
    use TicketState as S;
    Ok(match command {
        C::Create(_) => return Err(TicketError::InvalidTransition { from: t.state, to: S::New }),
        C::Triage(c) => {
            let outcome = match c.workflow_outcome {
                TriageOutcome::Triaged => S::Triaged,
                TriageOutcome::ReadyToSchedule => S::ReadyToSchedule,
                TriageOutcome::ApprovalRequired => S::ApprovalRequired,
            };
            gate.to(outcome)?;
            E::Triaged { outcome, priority: c.priority, notes: c.notes.clone() }
        }
        C::ProposeSchedule(c) => propose_schedule(c, gate)?,
        C::ConfirmSchedule(c) => {
            gate.to(S::Scheduled)?;
            if !t.proposed_windows.contains(&c.window) {
                return Err(invalid("window", "window is not one of the proposed windows"));
            }
            E::ScheduleConfirmed { window: c.window.clone() }
        }
        C::Dispatch(c) => dispatch(t, c, gate)?,
        C::CheckIn(_) => gate.to(S::InProgress).map(|()| E::CheckedIn {})?,
        C::RequestChange(c) => {
            gate.to(S::ApprovalRequired)?;
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
            gate.to(to)?;
            required("reason", &c.reason)?;
            E::ApprovalDecided { decision: c.decision, reason: c.reason.clone(), to }
        }
        C::AddEvidence(c) => add_evidence(t, c, gate, cx)?,
        C::Complete(c) => {
            gate.to(S::CompletedPendingVerification)?;
            closeout::gate(t, &c.checklist, c.no_signature_reason.as_deref(), cx.templates, cx.resolves)?;
            E::Completed { checklist: c.checklist.clone(), no_signature_reason: c.no_signature_reason.clone() }
        }
        C::Verify(c) => {
            gate.to(S::Verified)?;
            // Evidence can change (or rot on disk) after completion: check again.
            closeout::gate(t, &t.checklist, t.no_signature_reason.as_deref(), cx.templates, cx.resolves)?;
            E::Verified { notes: c.notes.clone() }
        }
        C::GenerateInvoice(c) => generate_invoice(c, gate)?,
        C::Close(_) => gate.to(S::Closed).map(|()| E::Closed {})?,
        C::Cancel(c) => {
            gate.to(S::Cancelled)?;
            required("reason", &c.reason)?;
            E::Cancelled { reason: c.reason.clone() }
        }
    })
}

fn create(c: &CreateTicket, cx: &DecideContext<'_>) -> Result<Vec<TicketEvent>, TicketError> {
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
    Ok(vec![TicketEvent::Created {
        account_id: c.account_id.clone(),
        site_id: c.site_id.clone(),
        incident_type: c.incident_type.clone(),
        summary: c.summary.clone(),
        priority: c.priority.unwrap_or_default(),
    }])
}

fn propose_schedule(c: &ProposeSchedule, gate: &Gate) -> Result<TicketEvent, TicketError> {
    gate.to(TicketState::ScheduleProposed)?;
    if c.windows.is_empty() {
        return Err(invalid("windows", "propose at least one window"));
    }
    if let Some(w) = c.windows.iter().find(|w| w.start >= w.end) {
        return Err(invalid("windows", format!("window starting {} does not end after it starts", w.start)));
    }
    Ok(TicketEvent::ScheduleProposed { windows: c.windows.clone() })
}

fn dispatch(t: &Ticket, c: &DispatchAssignment, gate: &Gate) -> Result<TicketEvent, TicketError> {
    let mode = c.dispatch_mode.unwrap_or_default();
    // TRIAGED → DISPATCHED is only open to an emergency bypass.
    if !gate.allowed || (t.state == TicketState::Triaged && mode != DispatchMode::EmergencyBypass) {
        return Err(TicketError::InvalidTransition { from: t.state, to: TicketState::Dispatched });
    }
    required("technician_id", &c.technician_id)?;
    if mode == DispatchMode::EmergencyBypass {
        required("reason", c.reason.as_deref().unwrap_or(""))?;
        required("manager_confirmation", c.manager_confirmation.as_deref().unwrap_or(""))?;
    }
    Ok(TicketEvent::Dispatched {
        technician_id: c.technician_id.clone(),
        mode,
        reason: c.reason.clone(),
        manager_confirmation: c.manager_confirmation.clone(),
    })
}

fn add_evidence(t: &Ticket, c: &AddEvidence, gate: &Gate, cx: &DecideContext<'_>) -> Result<TicketEvent, TicketError> {
    gate.to(t.state)?;
    if t.evidence.len() >= MAX_EVIDENCE {
        return Err(invalid("evidence", format!("a ticket holds at most {MAX_EVIDENCE} evidence items")));
    }
    required("kind", &c.kind)?;
    required("uri", &c.uri)?;
    required("evidence_key", &c.evidence_key)?;
    Ok(TicketEvent::EvidenceAdded {
        evidence: Evidence {
            id: Uuid::new_v5(&cx.ticket_id, format!("{}#{}", t.version + 1, c.uri).as_bytes()),
            kind: c.kind.clone(),
            uri: c.uri.clone(),
            evidence_key: c.evidence_key.clone(),
            metadata: c.metadata.clone(),
            added_at: cx.now,
            added_by: cx.principal.sub.clone(),
        },
    })
}

fn generate_invoice(c: &GenerateInvoice, gate: &Gate) -> Result<TicketEvent, TicketError> {
    gate.to(TicketState::Invoiced)?;
    if c.amount_cents < 0 {
        return Err(invalid("amount_cents", "amount_cents must not be negative"));
    }
    if c.currency.len() != 3 || !c.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid("currency", "currency must be a three-letter ISO 4217 code, e.g. USD"));
    }
    Ok(TicketEvent::Invoiced { amount_cents: c.amount_cents, currency: c.currency.clone() })
}

// ---------------------------------------------------------------- apply

/// Folds one event into the ticket. `seq` is the event's position in the stream.
/// An event that cannot apply (anything but `Created` before creation) leaves the
/// input unchanged; `decide` never produces one.
pub fn apply(ticket: Option<Ticket>, id: Uuid, seq: u64, at: OffsetDateTime, event: &TicketEvent) -> Option<Ticket> {
    let mut t = match (ticket, event) {
        (None, TicketEvent::Created { account_id, site_id, incident_type, summary, priority }) => {
            return Some(Ticket {
                id,
                state: TicketState::New,
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
        (Some(t), TicketEvent::Created { .. }) => return Some(t),
        (Some(t), _) => t,
    };
    fold(&mut t, event);
    t.version = seq;
    t.updated_at = at;
    Some(t)
}

/// What an event changes on an existing ticket.
fn fold(t: &mut Ticket, event: &TicketEvent) {
    use TicketEvent as E;
    use TicketState as S;
    match event {
        E::Created { .. } => {}
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
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
