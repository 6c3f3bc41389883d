//! Tickets and lane handoffs in the simulator, through the whole node: simulated
//! clients speak HTTP to the orchestrator the CLI would start, across a partition
//! and an orchestrator crash. Acknowledged commands survive, a retry with the same
//! idempotency key answers what the first answer said, and a durable timer set
//! before the crash fires once after the restart.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatch_sim::http::{AGENT, Actor, Answer, DISPATCHER, Exchange, send_until_answered};
use dispatch_sim::{Harness, ORCHESTRATOR, Setup};
use serde_json::{Value, json};

const S: fn(u64) -> Duration = Duration::from_secs;
const WINDOW: &str = r#"{"start":"2026-11-23T09:00:00Z","end":"2026-11-23T11:00:00Z"}"#;
/// Sends per request before a client gives up (one simulated second apart).
const ATTEMPTS: u32 = 60;

/// What a client was answered, in order, and whether it has finished.
#[derive(Default)]
struct Journal {
    answered: Vec<(Exchange, Answer, u32)>,
    done: bool,
}

type Shared = Arc<Mutex<Journal>>;

fn lock(j: &Shared) -> std::sync::MutexGuard<'_, Journal> {
    j.lock().unwrap_or_else(|e| e.into_inner())
}

/// A key that repeats run to run (the same seed must write the same log).
fn key(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Sends `request` until answered and writes the answer down; `None` when no answer
/// came. Then pauses a simulated second, as a person at a console would.
async fn exchange(journal: &Shared, actor: &Actor, request: Exchange) -> Option<Answer> {
    let (answer, attempts) = send_until_answered(actor, &request, ATTEMPTS).await.ok()?;
    lock(journal).answered.push((request, answer.clone(), attempts));
    tokio::time::sleep(S(1)).await;
    Some(answer)
}

fn post(path: String, n: usize, body: Value) -> Exchange {
    Exchange { method: "POST", path, key: Some(key(n)), body: Some(body) }
}

/// A dispatcher creates `tickets` tickets and takes each to DISPATCHED, one command at a time.
async fn dispatcher(journal: Shared, tickets: usize) -> turmoil::Result {
    let window: Value = serde_json::from_str(WINDOW)?;
    let mut n = 0;
    for t in 0..tickets {
        let create = json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "DOOR_WONT_LATCH",
                             "summary": format!("door {t} will not latch") });
        n += 1;
        let Some((201, ticket)) = exchange(&journal, &DISPATCHER, post("/v1/tickets".into(), n, create)).await else {
            return Err(format!("ticket {t} was not created").into());
        };
        let id = ticket["id"].as_str().unwrap_or_default().to_owned();
        for (step, body) in [
            ("triage", json!({ "workflow_outcome": "READY_TO_SCHEDULE" })),
            ("schedule/propose", json!({ "windows": [window.clone()] })),
            ("schedule/confirm", json!({ "window": window.clone() })),
            ("assignment/dispatch", json!({ "technician_id": "tech-1" })),
        ] {
            n += 1;
            let answer = exchange(&journal, &DISPATCHER, post(format!("/v1/tickets/{id}/{step}"), n, body)).await;
            if !matches!(answer, Some((200, _))) {
                return Err(format!("{step} on {id}: {answer:?}").into());
            }
        }
    }
    lock(&journal).done = true;
    Ok(())
}

fn acknowledged(journal: &Shared) -> usize {
    lock(journal).answered.len()
}

/// Runs the ticket scenario: a partition between the dispatcher and the
/// orchestrator, then an orchestrator crash, while commands are in flight.
fn tickets_through_faults(seed: u64) -> (Harness, Shared) {
    let setup = Setup::new(seed);
    let mut h = Harness::new(&setup);
    let journal = Shared::default();
    h.sim.client("dispatcher", dispatcher(journal.clone(), 3));
    h.run_until("two commands acknowledged", S(60), |_| acknowledged(&journal) >= 2);
    h.sim.partition("dispatcher", ORCHESTRATOR);
    h.run_for(S(8));
    h.sim.repair("dispatcher", ORCHESTRATOR);
    h.run_until("seven commands acknowledged", S(60), |_| acknowledged(&journal) >= 7);
    h.crash(ORCHESTRATOR);
    h.run_for(S(3));
    h.sim.bounce(ORCHESTRATOR);
    h.run_until("every command acknowledged", S(120), |_| lock(&journal).done);
    (h, journal)
}

/// The ticket events of every ticket the dispatcher created, with their ids.
fn ticket_trace(h: &Harness, journal: &Shared) -> Vec<String> {
    let ids: Vec<String> = lock(journal)
        .answered
        .iter()
        .filter(|(request, _, _)| request.path == "/v1/tickets")
        .map(|(_, (_, body), _)| body["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.iter().flat_map(|id| h.trace_stream(&format!("ticket/{id}"))).collect()
}

#[test]
fn acknowledged_ticket_commands_survive_a_partition_and_a_crash_and_retries_answer_the_same() {
    dispatch_sim::sweep(
        "acknowledged_ticket_commands_survive_a_partition_and_a_crash_and_retries_answer_the_same",
        11,
        |seed| {
            let (mut h, journal) = tickets_through_faults(seed);
            let answered = lock(&journal).answered.clone();
            assert_eq!(answered.len(), 15, "3 tickets × (create + 4 commands)");
            let retried = answered.iter().filter(|(_, _, attempts)| *attempts > 1).count();
            assert!(
                retried >= 2,
                "the partition and the crash should each have held up a command; {retried} were retried"
            );

            // Every ticket is where its last acknowledged command left it, each command applied once.
            for id in answered.iter().filter(|(r, _, _)| r.path == "/v1/tickets").map(|(_, (_, b), _)| b["id"].clone())
            {
                let states: Vec<String> = h
                    .stream(&format!("ticket/{}", id.as_str().unwrap()))
                    .into_iter()
                    .filter_map(|r| r.to_state)
                    .collect();
                let mut path = states.clone();
                path.dedup();
                assert_eq!(
                    path,
                    ["NEW", "READY_TO_SCHEDULE", "SCHEDULE_PROPOSED", "SCHEDULED", "DISPATCHED"],
                    "{id}: {states:?}"
                );
                assert_eq!(
                    states.iter().filter(|s| *s == "READY_TO_SCHEDULE").count(),
                    1,
                    "{id}: triage applied once: {states:?}"
                );
            }

            // A retry of any acknowledged command, after the crash, answers what the first answer said.
            let replays = Shared::default();
            let (requests, sink) = (answered.clone(), replays.clone());
            h.sim.client("retrier", async move {
                for (request, _, _) in requests {
                    exchange(&sink, &DISPATCHER, request).await;
                }
                lock(&sink).done = true;
                Ok(())
            });
            h.run_until("every retry answered", S(60), |_| lock(&replays).done);
            for ((request, first, _), (_, again, _)) in answered.iter().zip(lock(&replays).answered.iter()) {
                assert_eq!(first, again, "{} {} answered differently on retry", request.method, request.path);
            }
        },
    );
}

#[test]
fn the_same_seed_gives_the_same_ticket_trace() {
    dispatch_sim::sweep("the_same_seed_gives_the_same_ticket_trace", 21, |seed| {
        let (first, journal) = tickets_through_faults(seed);
        let (second, again) = tickets_through_faults(seed);
        let (a, b) = (ticket_trace(&first, &journal), ticket_trace(&second, &again));
        assert!(a.len() >= 15, "{a:?}");
        assert_eq!(a, b, "same seed, different ticket histories");
    });
}

/// An agent opens a lane, checkpoints, and asks a human for a decision with a
/// first-response SLA of `sla` seconds.
async fn agent(journal: Shared, sla: u64) -> turmoil::Result {
    let lane = post("/v1/lanes".into(), 1, json!({ "lane_id": "lane-1" }));
    let checkpoint = post("/v1/lanes/lane-1/checkpoints".into(), 2, json!({ "name": "c1", "state": { "step": 1 } }));
    let handoff = post(
        "/v1/lanes/lane-1/handoffs".into(),
        3,
        json!({ "checkpoint": "c1", "trigger_class": "policy", "reason": "refund over limit", "context": { "amount": 900 },
                "queue": "ops", "sla_seconds": sla, "deadline_seconds": 3_600, "timeout_action": "reject" }),
    );
    for request in [lane, checkpoint, handoff] {
        let answer = exchange(&journal, &AGENT, request.clone()).await;
        if !matches!(answer, Some((200 | 201, _))) {
            return Err(format!("{} {}: {answer:?}", request.method, request.path).into());
        }
    }
    lock(&journal).done = true;
    Ok(())
}

/// Runs the handoff scenario: the agent's lane and handoff, then an orchestrator
/// crash before the SLA is due, then 15 simulated seconds after the restart.
fn handoff_through_a_crash(seed: u64) -> Harness {
    let setup = Setup::new(seed);
    let mut h = Harness::new(&setup);
    let journal = Shared::default();
    h.sim.client("agent", agent(journal.clone(), 5));
    h.run_until("the handoff is acknowledged", S(60), |_| lock(&journal).done);
    h.crash(ORCHESTRATOR);
    h.run_for(S(2));
    h.sim.bounce(ORCHESTRATOR);
    h.run_for(S(15));
    h
}

#[test]
fn a_handoff_sla_set_before_a_crash_fires_once_after_the_restart() {
    dispatch_sim::sweep("a_handoff_sla_set_before_a_crash_fires_once_after_the_restart", 31, |seed| {
        let h = handoff_through_a_crash(seed);
        let lane = h.stream("lane/lane-1");
        let requested = lane.iter().find(|r| r.kind == "handoff.requested").map(|r| r.time_ms).unwrap();
        let escalations: Vec<i64> = lane.iter().filter(|r| r.kind == "lane.escalated").map(|r| r.time_ms).collect();
        assert_eq!(escalations.len(), 1, "the SLA fired {} times", escalations.len());
        let late = escalations[0] - requested;
        assert!((5_000..9_000).contains(&late), "fired {late} ms after the request (SLA 5 s)");
    });
}

#[test]
fn the_same_seed_gives_the_same_lane_trace() {
    dispatch_sim::sweep("the_same_seed_gives_the_same_lane_trace", 41, |seed| {
        let (a, b) = (handoff_through_a_crash(seed), handoff_through_a_crash(seed));
        let (a, b) = (a.trace_stream("lane/lane-1"), b.trace_stream("lane/lane-1"));
        assert!(a.iter().any(|e| e.contains("lane.escalated")), "{a:?}");
        assert_eq!(a, b, "same seed, different lane histories");
    });
}

/// The orchestrator's wall clock steps two hours ahead while a handoff waits (SLA 60 s,
/// deadline 1 h), then three hours back: the due timers fire once, on the jump ahead,
/// and nothing fires again when the clock goes back.
#[test]
fn a_clock_jump_fires_due_handoff_timers_once_and_a_jump_back_fires_nothing() {
    dispatch_sim::sweep("a_clock_jump_fires_due_handoff_timers_once_and_a_jump_back_fires_nothing", 59, |seed| {
        let mut h = Harness::new(&Setup::new(seed));
        let journal = Shared::default();
        h.sim.client("agent", agent(journal.clone(), 60));
        h.run_until("the handoff is acknowledged", S(60), |_| lock(&journal).done);
        h.run_for(S(5));
        let kinds = |h: &Harness| h.stream("lane/lane-1").into_iter().map(|r| r.kind).collect::<Vec<_>>();
        let count = |kinds: &[String], kind: &str| kinds.iter().filter(|k| *k == kind).count();
        assert_eq!(count(&kinds(&h), "handoff.expired") + count(&kinds(&h), "lane.escalated"), 0, "nothing due yet");
        h.jump_clock(2 * 3_600_000);
        h.run_until("the deadline fires after the jump", S(10), |h| count(&kinds(h), "handoff.expired") > 0);
        h.run_for(S(5));
        let after = kinds(&h);
        assert_eq!(count(&after, "handoff.expired"), 1, "{after:?}");
        assert!(count(&after, "lane.escalated") <= 1, "{after:?}");
        h.jump_clock(-3 * 3_600_000);
        h.run_for(S(10));
        assert_eq!(kinds(&h), after, "a clock going back fires nothing again");
    });
}
