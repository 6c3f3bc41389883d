//! Tables of cases for `decide` and `apply`.

use std::collections::BTreeMap;

use time::macros::datetime;

use super::*;
use crate::policy::{PolicyDimension, Principal, Role};

const TECH: &str = "tech-1";

fn principal(role: Role) -> Principal {
    Principal {
        sub: if role == Role::Technician { TECH.into() } else { format!("{}-1", role.as_str()) },
        role,
        accounts: vec!["acct-1".into()],
        sites: vec!["*".into()],
        tools: None,
        queues: vec![],
    }
}

fn window() -> Window {
    Window { start: datetime!(2026-11-22 09:00 UTC), end: datetime!(2026-11-22 11:00 UTC) }
}

fn evidence(key: &str, kind: &str, uri: &str) -> Evidence {
    Evidence {
        id: Uuid::nil(),
        kind: kind.into(),
        uri: uri.into(),
        evidence_key: key.into(),
        metadata: None,
        added_at: datetime!(2026-11-22 10:00 UTC),
        added_by: TECH.into(),
    }
}

fn full_checklist() -> BTreeMap<String, bool> {
    [("latch_tested", true), ("strike_aligned", true)].into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A DOOR_WONT_LATCH ticket in `state`, assigned to TECH, with everything closeout needs.
fn ticket_in(state: TicketState) -> Ticket {
    let created = apply(
        None,
        Uuid::nil(),
        1,
        datetime!(2026-11-21 08:00 UTC),
        &TicketEvent::Created {
            account_id: "acct-1".into(),
            site_id: "site-1".into(),
            incident_type: "DOOR_WONT_LATCH".into(),
            summary: "front door".into(),
            priority: Priority::Normal,
        },
    );
    let mut t = created.expect("created");
    t.state = state;
    t.technician_id = Some(TECH.into());
    t.proposed_windows = vec![window()];
    t.approval_stage = (state == TicketState::ApprovalRequired).then_some(ApprovalStage::Work);
    t.evidence = vec![
        evidence("photo_before", "photo", "blob:ok-1"),
        evidence("photo_after", "photo", "blob:ok-2"),
        evidence("customer_signature", "signature", "blob:ok-3"),
    ];
    t.checklist = full_checklist();
    t
}

fn all_resolve(_: &str) -> bool {
    true
}

fn run(ticket: Option<&Ticket>, role: Role, command: &TicketCommand) -> Result<Vec<TicketEvent>, TicketError> {
    run_with(ticket, &principal(role), command, &all_resolve)
}

fn run_with(
    ticket: Option<&Ticket>,
    who: &Principal,
    command: &TicketCommand,
    resolves: &dyn Fn(&str) -> bool,
) -> Result<Vec<TicketEvent>, TicketError> {
    let templates = Templates::builtin();
    let cx = DecideContext {
        principal: who,
        now: datetime!(2026-11-22 10:30 UTC),
        ticket_id: Uuid::nil(),
        templates: &templates,
        resolves,
    };
    decide(ticket, command, &cx)
}

/// One valid-looking body per command and a role allowed to send it.
fn commands() -> Vec<(TicketCommand, Role)> {
    use TicketCommand as C;
    vec![
        (
            C::Triage(Triage { workflow_outcome: TriageOutcome::ReadyToSchedule, priority: None, notes: None }),
            Role::Dispatcher,
        ),
        (C::ProposeSchedule(ProposeSchedule { windows: vec![window()] }), Role::Dispatcher),
        (C::ConfirmSchedule(ConfirmSchedule { window: window() }), Role::Dispatcher),
        (
            C::Dispatch(DispatchAssignment {
                technician_id: TECH.into(),
                dispatch_mode: None,
                reason: None,
                manager_confirmation: None,
            }),
            Role::Dispatcher,
        ),
        (C::CheckIn(Empty {}), Role::Technician),
        (
            C::RequestChange(RequestChange { reason: "rusted".into(), change_summary: "replace strike".into() }),
            Role::Technician,
        ),
        (C::DecideApproval(DecideApproval { decision: Decision::Approved, reason: "ok".into() }), Role::Manager),
        (
            C::AddEvidence(AddEvidence {
                kind: "photo".into(),
                uri: "blob:x".into(),
                evidence_key: "photo_extra".into(),
                metadata: None,
            }),
            Role::Technician,
        ),
        (C::Complete(Complete { checklist: full_checklist(), no_signature_reason: None }), Role::Technician),
        (C::Verify(Verify { notes: None }), Role::Qa),
        (C::GenerateInvoice(GenerateInvoice { amount_cents: 12_500, currency: "USD".into() }), Role::Billing),
        (C::Close(Empty {}), Role::Billing),
        (C::Cancel(Cancel { reason: "customer called off".into() }), Role::Dispatcher),
    ]
}

#[test]
fn every_command_in_every_state_follows_the_policy_table() {
    let mut checked = 0;
    for (command, role) in commands() {
        let spec = crate::policy::tool(command.tool()).unwrap();
        for state in TicketState::ALL {
            let ticket = ticket_in(state);
            let result = run(Some(&ticket), role, &command);
            // The one rule beyond the table: a standard dispatch from TRIAGED is refused
            // (only the emergency bypass may skip scheduling; see the next test).
            let standard_dispatch_from_triaged =
                command.tool() == "assignment.dispatch" && state == TicketState::Triaged;
            let allowed = spec.from_states.contains(&state) && !standard_dispatch_from_triaged;
            match (allowed, &result) {
                (true, Ok(events)) => {
                    let after = events
                        .iter()
                        .try_fold(ticket.clone(), |t, e| apply(Some(t), ticket.id, 2, ticket.updated_at, e));
                    assert!(after.is_some(), "{} from {state}", command.tool());
                }
                (false, Err(TicketError::InvalidTransition { from, .. })) => assert_eq!(*from, state),
                _ => panic!("{} from {state}: allowed={allowed} but got {result:?}", command.tool()),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 13 * 13);
}

#[test]
fn valid_transitions_land_in_the_documented_state() {
    use TicketState as S;
    let approve = |d| TicketCommand::DecideApproval(DecideApproval { decision: d, reason: "r".into() });
    let triage = |o| TicketCommand::Triage(Triage { workflow_outcome: o, priority: Some(Priority::High), notes: None });
    let bypass = TicketCommand::Dispatch(DispatchAssignment {
        technician_id: TECH.into(),
        dispatch_mode: Some(DispatchMode::EmergencyBypass),
        reason: Some("no heat, elderly tenant".into()),
        manager_confirmation: Some("manager-7".into()),
    });
    let at_triage = |mut t: Ticket| {
        t.approval_stage = Some(ApprovalStage::Triage);
        t
    };
    let cases: Vec<(&str, Ticket, Role, TicketCommand, S)> = vec![
        ("triage to TRIAGED", ticket_in(S::New), Role::Dispatcher, triage(TriageOutcome::Triaged), S::Triaged),
        ("triage to READY", ticket_in(S::New), Role::Agent, triage(TriageOutcome::ReadyToSchedule), S::ReadyToSchedule),
        (
            "triage to approval",
            ticket_in(S::New),
            Role::Dispatcher,
            triage(TriageOutcome::ApprovalRequired),
            S::ApprovalRequired,
        ),
        ("propose from TRIAGED", ticket_in(S::Triaged), Role::Dispatcher, commands()[1].0.clone(), S::ScheduleProposed),
        (
            "propose from READY",
            ticket_in(S::ReadyToSchedule),
            Role::Dispatcher,
            commands()[1].0.clone(),
            S::ScheduleProposed,
        ),
        ("confirm", ticket_in(S::ScheduleProposed), Role::Dispatcher, commands()[2].0.clone(), S::Scheduled),
        ("dispatch", ticket_in(S::Scheduled), Role::Manager, commands()[3].0.clone(), S::Dispatched),
        ("emergency bypass", ticket_in(S::Triaged), Role::Dispatcher, bypass, S::Dispatched),
        ("check in", ticket_in(S::Dispatched), Role::Technician, commands()[4].0.clone(), S::InProgress),
        ("request change", ticket_in(S::InProgress), Role::Technician, commands()[5].0.clone(), S::ApprovalRequired),
        ("work approved", ticket_in(S::ApprovalRequired), Role::Manager, approve(Decision::Approved), S::InProgress),
        ("work denied", ticket_in(S::ApprovalRequired), Role::Manager, approve(Decision::Denied), S::InProgress),
        (
            "triage approved",
            at_triage(ticket_in(S::ApprovalRequired)),
            Role::Manager,
            approve(Decision::Approved),
            S::ReadyToSchedule,
        ),
        (
            "triage denied",
            at_triage(ticket_in(S::ApprovalRequired)),
            Role::Manager,
            approve(Decision::Denied),
            S::Cancelled,
        ),
        ("evidence keeps state", ticket_in(S::Dispatched), Role::Agent, commands()[7].0.clone(), S::Dispatched),
        (
            "complete",
            ticket_in(S::InProgress),
            Role::Technician,
            commands()[8].0.clone(),
            S::CompletedPendingVerification,
        ),
        ("verify by qa", ticket_in(S::CompletedPendingVerification), Role::Qa, commands()[9].0.clone(), S::Verified),
        (
            "verify by manager",
            ticket_in(S::CompletedPendingVerification),
            Role::Manager,
            commands()[9].0.clone(),
            S::Verified,
        ),
        ("invoice", ticket_in(S::Verified), Role::Billing, commands()[10].0.clone(), S::Invoiced),
        ("close by billing", ticket_in(S::Invoiced), Role::Billing, commands()[11].0.clone(), S::Closed),
        ("close by manager", ticket_in(S::Invoiced), Role::Manager, commands()[11].0.clone(), S::Closed),
        ("cancel new", ticket_in(S::New), Role::Dispatcher, commands()[12].0.clone(), S::Cancelled),
        ("cancel in progress", ticket_in(S::InProgress), Role::Manager, commands()[12].0.clone(), S::Cancelled),
    ];
    for (name, ticket, role, command, expected) in cases {
        let events = run(Some(&ticket), role, &command).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let after = events
            .iter()
            .try_fold(ticket.clone(), |t, e| apply(Some(t), ticket.id, ticket.version + 1, ticket.updated_at, e));
        let after = after.unwrap();
        assert_eq!(after.state, expected, "{name}");
        assert_eq!(after.version, ticket.version + 1, "{name}: one event, one version");
    }
}

#[test]
fn refusals_name_the_rule_that_refused() {
    use TicketState as S;
    let dispatch = |mode, reason: Option<&str>, confirm: Option<&str>| {
        TicketCommand::Dispatch(DispatchAssignment {
            technician_id: TECH.into(),
            dispatch_mode: mode,
            reason: reason.map(Into::into),
            manager_confirmation: confirm.map(Into::into),
        })
    };
    let other_tech = Principal { sub: "tech-2".into(), ..principal(Role::Technician) };
    let out_of_scope = Principal { accounts: vec!["acct-9".into()], ..principal(Role::Dispatcher) };
    let narrow_tools = Principal { tools: Some(vec!["ticket.get".into()]), ..principal(Role::Dispatcher) };
    let cancel = commands()[12].0.clone();
    let check_in = commands()[4].0.clone();
    type Check = fn(&TicketError) -> bool;
    let cases: Vec<(&str, Ticket, Principal, TicketCommand, Check)> = vec![
        (
            "TRIAGED→DISPATCHED needs the bypass",
            ticket_in(S::Triaged),
            principal(Role::Dispatcher),
            dispatch(None, None, None),
            |e| matches!(e, TicketError::InvalidTransition { from: TicketState::Triaged, to: TicketState::Dispatched }),
        ),
        (
            "bypass needs a reason",
            ticket_in(S::Triaged),
            principal(Role::Dispatcher),
            dispatch(Some(DispatchMode::EmergencyBypass), None, Some("m")),
            |e| matches!(e, TicketError::Validation { field: Some(f), .. } if f == "reason"),
        ),
        (
            "bypass needs a manager's confirmation",
            ticket_in(S::Triaged),
            principal(Role::Dispatcher),
            dispatch(Some(DispatchMode::EmergencyBypass), Some("r"), None),
            |e| matches!(e, TicketError::Validation { field: Some(f), .. } if f == "manager_confirmation"),
        ),
        (
            "role not allowed",
            ticket_in(S::New),
            principal(Role::Technician),
            cancel.clone(),
            |e| matches!(e, TicketError::Denied(d) if d.dimension == PolicyDimension::Role),
        ),
        (
            "not the assignee",
            ticket_in(S::Dispatched),
            other_tech,
            check_in.clone(),
            |e| matches!(e, TicketError::Denied(d) if d.dimension == PolicyDimension::Role),
        ),
        (
            "out of scope",
            ticket_in(S::New),
            out_of_scope,
            cancel.clone(),
            |e| matches!(e, TicketError::Denied(d) if d.dimension == PolicyDimension::Scope),
        ),
        (
            "tool outside the token's list",
            ticket_in(S::New),
            narrow_tools,
            cancel.clone(),
            |e| matches!(e, TicketError::Denied(d) if d.dimension == PolicyDimension::Tool),
        ),
        (
            "cancel needs a reason",
            ticket_in(S::New),
            principal(Role::Dispatcher),
            TicketCommand::Cancel(Cancel { reason: " ".into() }),
            |e| matches!(e, TicketError::Validation { .. }),
        ),
        (
            "confirm an unproposed window",
            ticket_in(S::ScheduleProposed),
            principal(Role::Dispatcher),
            TicketCommand::ConfirmSchedule(ConfirmSchedule {
                window: Window { start: datetime!(2030-01-01 0:00 UTC), end: datetime!(2030-01-01 1:00 UTC) },
            }),
            |e| matches!(e, TicketError::Validation { .. }),
        ),
        (
            "window ends before it starts",
            ticket_in(S::Triaged),
            principal(Role::Dispatcher),
            TicketCommand::ProposeSchedule(ProposeSchedule {
                windows: vec![Window { start: datetime!(2030-01-01 2:00 UTC), end: datetime!(2030-01-01 1:00 UTC) }],
            }),
            |e| matches!(e, TicketError::Validation { .. }),
        ),
        (
            "negative invoice",
            ticket_in(S::Verified),
            principal(Role::Billing),
            TicketCommand::GenerateInvoice(GenerateInvoice { amount_cents: -1, currency: "USD".into() }),
            |e| matches!(e, TicketError::Validation { .. }),
        ),
        (
            "bad currency",
            ticket_in(S::Verified),
            principal(Role::Billing),
            TicketCommand::GenerateInvoice(GenerateInvoice { amount_cents: 1, currency: "usd".into() }),
            |e| matches!(e, TicketError::Validation { .. }),
        ),
    ];
    for (name, ticket, who, command, check) in cases {
        match run_with(Some(&ticket), &who, &command, &all_resolve) {
            Err(e) => assert!(check(&e), "{name}: unexpected {e:?}"),
            Ok(ev) => panic!("{name}: accepted with {ev:?}"),
        }
    }
    assert_eq!(run(None, Role::Dispatcher, &cancel), Err(TicketError::NotFound));
}

#[test]
fn creation_checks_scope_and_incident_type() {
    let create = |account: &str, incident: &str| {
        TicketCommand::Create(CreateTicket {
            account_id: account.into(),
            site_id: "site-1".into(),
            incident_type: incident.into(),
            summary: "door".into(),
            priority: None,
        })
    };
    assert!(run(None, Role::Dispatcher, &create("acct-1", "LOCKOUT")).is_ok());
    assert!(run(None, Role::Admin, &create("acct-1", "LOCKOUT")).is_ok());
    assert!(matches!(run(None, Role::Dispatcher, &create("acct-2", "LOCKOUT")),
        Err(TicketError::Denied(d)) if d.dimension == PolicyDimension::Scope));
    assert!(matches!(run(None, Role::Dispatcher, &create("acct-1", "VOLCANO")), Err(TicketError::Validation { .. })));
    assert!(matches!(run(None, Role::Qa, &create("acct-1", "LOCKOUT")), Err(TicketError::Denied(_))));
}

#[test]
fn closeout_gate_lists_exactly_what_is_missing() {
    use TicketState as S;
    let complete = |items: &[&str], reason: Option<&str>| {
        TicketCommand::Complete(Complete {
            checklist: items.iter().map(|i| (i.to_string(), true)).collect(),
            no_signature_reason: reason.map(Into::into),
        })
    };
    let mut bare = ticket_in(S::InProgress);
    bare.evidence.clear();
    let mut unsigned = ticket_in(S::InProgress);
    unsigned.evidence.retain(|e| e.kind != "signature");
    let tech = principal(Role::Technician);

    let err =
        run_with(Some(&bare), &tech, &complete(&["strike_aligned"], Some("tenant absent")), &all_resolve).unwrap_err();
    assert_eq!(
        err,
        TicketError::CloseoutIncomplete {
            missing_evidence_keys: vec!["photo_after".into(), "photo_before".into()],
            missing_checklist_items: vec!["latch_tested".into()],
        }
    );
    let items = ["latch_tested", "strike_aligned"];
    assert_eq!(
        run_with(Some(&unsigned), &tech, &complete(&items, None), &all_resolve),
        Err(TicketError::MissingSignature)
    );
    assert_eq!(
        run_with(Some(&unsigned), &tech, &complete(&items, Some("  ")), &all_resolve),
        Err(TicketError::MissingSignature)
    );
    assert!(run_with(Some(&unsigned), &tech, &complete(&items, Some("tenant absent")), &all_resolve).is_ok());
    let broken = |uri: &str| uri != "blob:ok-2";
    assert_eq!(
        run_with(Some(&unsigned), &tech, &complete(&items, Some("tenant absent")), &broken),
        Err(TicketError::InvalidEvidenceReference { uris: vec!["blob:ok-2".into()] })
    );

    // Verification re-checks: a blob gone bad after completion stops verification.
    let done = ticket_in(S::CompletedPendingVerification);
    assert!(matches!(
        run_with(Some(&done), &principal(Role::Qa), &TicketCommand::Verify(Verify::default()), &broken),
        Err(TicketError::InvalidEvidenceReference { .. })
    ));
}

#[test]
fn replaying_events_rebuilds_the_same_ticket() {
    let id = Uuid::nil();
    let events = [
        TicketEvent::Created {
            account_id: "a".into(),
            site_id: "s".into(),
            incident_type: "LOCKOUT".into(),
            summary: "x".into(),
            priority: Priority::Emergency,
        },
        TicketEvent::Triaged { outcome: TicketState::Triaged, priority: None, notes: Some("n".into()) },
        TicketEvent::Dispatched {
            technician_id: TECH.into(),
            mode: DispatchMode::EmergencyBypass,
            reason: Some("r".into()),
            manager_confirmation: Some("m".into()),
        },
        TicketEvent::CheckedIn {},
        TicketEvent::EvidenceAdded { evidence: evidence("photo_after", "photo", "blob:1") },
    ];
    let at = datetime!(2026-11-21 08:00 UTC);
    let fold = |evs: &[TicketEvent]| evs.iter().enumerate().fold(None, |t, (i, e)| apply(t, id, i as u64 + 1, at, e));
    let direct = fold(&events).unwrap();
    let through_json: Vec<TicketEvent> =
        events.iter().map(|e| serde_json::from_slice(&serde_json::to_vec(e).unwrap()).unwrap()).collect();
    assert_eq!(fold(&through_json).unwrap(), direct);
    let snapshot: Ticket = serde_json::from_slice(&serde_json::to_vec(&direct).unwrap()).unwrap();
    assert_eq!(snapshot, direct, "a snapshot round-trips exactly");
    assert_eq!(direct.state, TicketState::InProgress);
    assert_eq!(direct.version, 5);
    assert_eq!(direct.emergency_reason.as_deref(), Some("r"));
    assert_eq!(apply(None, id, 1, at, &TicketEvent::Closed {}), None, "only creation starts a ticket");
}

#[test]
fn a_ticket_holds_a_bounded_number_of_evidence_items() {
    let mut t = ticket_in(TicketState::InProgress);
    t.evidence = (0..MAX_EVIDENCE).map(|i| evidence(&format!("k{i}"), "photo", "blob:x")).collect();
    let add = TicketCommand::AddEvidence(AddEvidence {
        kind: "photo".into(),
        uri: "blob:x".into(),
        evidence_key: "one_more".into(),
        metadata: None,
    });
    let refused = run(Some(&t), Role::Technician, &add);
    assert!(
        matches!(refused, Err(TicketError::Validation { field: Some(ref f), .. }) if f == "evidence"),
        "{refused:?}"
    );
    t.evidence.pop();
    assert!(run(Some(&t), Role::Technician, &add).is_ok());
}
