use serde_json::json;

use super::*;

fn run(mut lane: Option<Lane>, commands: &[LaneCommand]) -> Result<Lane, LaneError> {
    for c in commands {
        for e in decide(lane.as_ref(), c)? {
            lane = apply(lane, "l1", 0, &e);
        }
    }
    lane.ok_or(LaneError::NotFound)
}

fn request(id: &str, checkpoint: &str, action: TimeoutAction) -> LaneCommand {
    LaneCommand::RequestHandoff {
        request: HandoffRequest {
            handoff_id: id.into(),
            checkpoint: checkpoint.into(),
            trigger_class: "policy".into(),
            reason: "needs a person".into(),
            context: json!({"k": 1}),
            queue: "ops".into(),
            sla_due_ms: 100,
            deadline_ms: 1_000,
            timeout_action: action,
        },
    }
}

fn decide_cmd(id: &str, action: DecisionAction) -> LaneCommand {
    LaneCommand::Decide {
        handoff_id: id.into(),
        action,
        reason: "ok".into(),
        reroute_to: Some("billing".into()),
        context: Some(json!({"more": true})),
        by: "op".into(),
        now_ms: 50,
    }
}

/// A lane with checkpoint `c1` and handoff `h1` open (timeout `action`).
fn waiting(action: TimeoutAction) -> Lane {
    let create = LaneCommand::Create { agent: "agent-1".into(), ticket_id: None, callback_url: None };
    let checkpoint = LaneCommand::Checkpoint { name: "c1".into(), state: json!({}), now_ms: 0 };
    run(None, &[create, checkpoint, request("h1", "c1", action)]).unwrap()
}

#[test]
fn each_decision_leaves_the_handoff_and_lane_where_documented() {
    use DecisionAction::*;
    // (action, handoff after, lane after)
    let table = [
        (Approve, HandoffStatus::Decided, LaneStatus::Active),
        (Reject, HandoffStatus::Decided, LaneStatus::Active),
        (Reroute, HandoffStatus::Open, LaneStatus::WaitingHuman),
        (AddContext, HandoffStatus::Open, LaneStatus::WaitingHuman),
    ];
    for (action, handoff, lane) in table {
        let l = run(Some(waiting(TimeoutAction::Reject)), &[decide_cmd("h1", action)]).unwrap();
        let h = l.handoff.as_ref().unwrap();
        assert_eq!((h.status, l.status), (handoff, lane), "{action:?}");
        assert_eq!(h.first_response_ms, Some(0), "{action:?} is a first response");
        if matches!(action, Approve | Reject) {
            assert_eq!(h.decision.as_ref().map(|d| d.resume_from.as_str()), Some("c1"), "resumes from the checkpoint");
        }
    }
    let rerouted = run(Some(waiting(TimeoutAction::Reject)), &[decide_cmd("h1", Reroute)]).unwrap();
    assert_eq!(rerouted.handoff.unwrap().request.queue, "billing");
}

#[test]
fn decisions_on_a_decided_expired_or_closed_handoff_are_refused() {
    let decided = run(Some(waiting(TimeoutAction::Reject)), &[decide_cmd("h1", DecisionAction::Approve)]).unwrap();
    assert_eq!(
        decide(Some(&decided), &decide_cmd("h1", DecisionAction::Reject)),
        Err(LaneError::HandoffNotOpen("DECIDED"))
    );
    let expired = run(
        Some(waiting(TimeoutAction::Reject)),
        &[LaneCommand::DeadlineDue { handoff_id: "h1".into(), now_ms: 1_000 }],
    )
    .unwrap();
    assert_eq!(expired.handoff.as_ref().unwrap().status, HandoffStatus::Expired);
    assert_eq!(expired.status, LaneStatus::Active, "the timeout action (reject) resumes the lane");
    assert_eq!(
        decide(Some(&expired), &decide_cmd("h1", DecisionAction::Approve)),
        Err(LaneError::HandoffNotOpen("EXPIRED"))
    );
    let close = LaneCommand::OverrideClose { by: "op".into(), reason: "human_override: done by hand".into() };
    let closed = run(Some(waiting(TimeoutAction::Reject)), &[close]).unwrap();
    assert_eq!((closed.status, closed.handoff.as_ref().unwrap().status), (LaneStatus::Closed, HandoffStatus::Closed));
    assert_eq!(decide(Some(&closed), &decide_cmd("h1", DecisionAction::Approve)), Err(LaneError::Closed));
    assert_eq!(decide(Some(&closed), &decide_cmd("h9", DecisionAction::Approve)), Err(LaneError::Closed));
}

#[test]
fn handoffs_need_a_recorded_checkpoint_and_only_one_is_open() {
    let create = LaneCommand::Create { agent: "a".into(), ticket_id: None, callback_url: None };
    let lane = run(None, &[create]).unwrap();
    assert_eq!(
        decide(Some(&lane), &request("h1", "nope", TimeoutAction::Reject)),
        Err(LaneError::UnknownCheckpoint("nope".into()))
    );
    assert_eq!(
        decide(Some(&waiting(TimeoutAction::Reject)), &request("h2", "c1", TimeoutAction::Reject)),
        Err(LaneError::HandoffOpen)
    );
    assert_eq!(
        decide(Some(&waiting(TimeoutAction::Reject)), &decide_cmd("h9", DecisionAction::Approve)),
        Err(LaneError::UnknownHandoff)
    );
}

#[test]
fn timers_escalate_once_and_only_for_the_handoff_they_belong_to() {
    let sla = |now_ms| LaneCommand::SlaDue { handoff_id: "h1".into(), now_ms };
    let lane = waiting(TimeoutAction::Escalate);
    assert_eq!(decide(Some(&lane), &sla(99)), Ok(vec![]), "not due yet");
    let escalated = run(Some(lane), &[sla(100)]).unwrap();
    assert_eq!(escalated.status, LaneStatus::Blocked);
    assert!(escalated.handoff.as_ref().unwrap().escalated);
    assert_eq!(decide(Some(&escalated), &sla(200)), Ok(vec![]), "escalated once");
    let deadline = LaneCommand::DeadlineDue { handoff_id: "h1".into(), now_ms: 1_000 };
    assert_eq!(decide(Some(&escalated), &deadline), Ok(vec![]), "already escalated: the deadline adds nothing");
    // Answered in time: the SLA timer does nothing.
    let answered =
        run(Some(waiting(TimeoutAction::Escalate)), &[decide_cmd("h1", DecisionAction::AddContext)]).unwrap();
    assert_eq!(decide(Some(&answered), &sla(100)), Ok(vec![]));
    // An escalated handoff can still be decided; the lane resumes.
    let decided = run(Some(escalated), &[decide_cmd("h1", DecisionAction::Approve)]).unwrap();
    assert_eq!(decided.status, LaneStatus::Active);
    assert_eq!(
        decide(Some(&decided), &LaneCommand::DeadlineDue { handoff_id: "h1".into(), now_ms: 5_000 }),
        Ok(vec![])
    );
}

#[test]
fn operator_controls_check_their_preconditions() {
    let lane = waiting(TimeoutAction::Reject);
    let assign = |reassign| LaneCommand::AssignOwner {
        owner: "ann".into(),
        by: "op".into(),
        reason: "on call".into(),
        reassign,
    };
    assert_eq!(decide(Some(&lane), &assign(true)), Err(LaneError::NoOwner));
    let owned = run(Some(lane.clone()), &[assign(false)]).unwrap();
    assert_eq!(owned.owner.as_deref(), Some("ann"));
    assert_eq!(decide(Some(&owned), &assign(false)), Err(LaneError::OwnerExists("ann".into())));
    assert!(decide(Some(&owned), &assign(true)).is_ok());
    let unblock = LaneCommand::Unblock { by: "op".into(), reason: "fixed".into() };
    assert_eq!(decide(Some(&lane), &unblock), Err(LaneError::NotBlocked));
    let blocked =
        run(Some(lane.clone()), &[LaneCommand::Escalate { by: "op".into(), reason: "stuck".into() }]).unwrap();
    assert_eq!(
        run(Some(blocked), &[unblock]).unwrap().status,
        LaneStatus::WaitingHuman,
        "back to waiting on its open handoff"
    );
    let bad_close = LaneCommand::OverrideClose { by: "op".into(), reason: "done".into() };
    assert!(matches!(decide(Some(&lane), &bad_close), Err(LaneError::Invalid(m)) if m.contains("human_override:")));
}

#[test]
fn checkpoints_and_handoffs_per_lane_are_capped() {
    let mut lane = waiting(TimeoutAction::Reject);
    for i in 0..MAX_CHECKPOINTS - 1 {
        let c = LaneCommand::Checkpoint { name: format!("c{}", i + 2), state: json!({}), now_ms: 0 };
        lane = run(Some(lane), &[c]).unwrap();
    }
    assert_eq!(lane.checkpoints.len(), MAX_CHECKPOINTS);
    let one_more = LaneCommand::Checkpoint { name: "new".into(), state: json!({}), now_ms: 0 };
    assert_eq!(
        decide(Some(&lane), &one_more),
        Err(LaneError::LimitReached { what: "checkpoints", limit: MAX_CHECKPOINTS })
    );
    let again = LaneCommand::Checkpoint { name: "c1".into(), state: json!({"step": 2}), now_ms: 0 };
    assert!(decide(Some(&lane), &again).is_ok(), "an existing checkpoint can still be recorded again");
    let huge = LaneCommand::Checkpoint { name: "c1".into(), state: json!("x".repeat(MAX_CHECKPOINT_STATE)), now_ms: 0 };
    assert!(matches!(decide(Some(&lane), &huge), Err(LaneError::Invalid(_))));
}

#[test]
fn a_handoff_is_due_when_it_asks_or_by_default_within_bounds() {
    let now = 1_000_000;
    type Due = Option<(i64, i64)>;
    let table: [(Option<u64>, Option<u64>, Due); 6] = [
        (None, None, Some((now + 300_000, now + 3_600_000))),
        (Some(5), Some(60), Some((now + 5_000, now + 60_000))),
        (Some(0), None, None),
        (None, Some(0), None),
        (Some(7 * 86_400 + 1), None, None),
        (None, Some(30 * 86_400), Some((now + 300_000, now + 30 * 86_400_000))),
    ];
    for (sla, deadline, due) in table {
        match (handoff_due(now, sla, deadline), due) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{sla:?} {deadline:?}"),
            (Err(LaneError::Invalid(_)), None) => {}
            (got, want) => panic!("{sla:?} {deadline:?}: got {got:?}, wanted {want:?}"),
        }
    }
}
