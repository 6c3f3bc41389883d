//! 100 synthetic lanes driven over HTTP, 1–5% of steps raising a handoff; operators
//! decide some, others time out; the orchestrator restarts in the middle. No lane
//! waits on another, and every event is accounted for: what was sent, the lanes'
//! timelines and the metrics agree, and nothing is lost across the restart.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;
use tokio::sync::Mutex;

const LANES: usize = 100;
const STEPS_PER_PHASE: usize = 10;
/// How long lanes without a handoff may take to finish while every handoff waits
/// undecided (generous: a lane blocked behind another never finishes at all).
const FREE_LANES_WITHIN: Duration = Duration::from_secs(60);

/// About 3% of steps raise a handoff (deterministic, so runs repeat).
fn raises(lane: usize, step: usize) -> bool {
    (lane * 31 + step * 17 + 7) % 100 < 3
}

#[derive(Default, Debug)]
struct Sent {
    checkpoints: usize,
    handoffs: usize,
    decided: usize,
    timed_out: usize,
}

async fn post(http: &reqwest::Client, url: &str, token: &str, key: &str, body: Value) -> (u16, Value) {
    let r = http.post(url).bearer_auth(token).header("idempotency-key", key).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// One phase: every lane runs its steps concurrently; operators decide the handoffs
/// that will not time out, but only once every lane without a handoff has finished:
/// if a lane waited on another's handoff, that never happens.
async fn phase(s: &Server, agent: &str, operator: &str, phase: usize, sent: Arc<Mutex<Sent>>) {
    let http = support::client_builder().pool_max_idle_per_host(0).build().unwrap();
    let started = Instant::now();
    let steps = phase * STEPS_PER_PHASE..(phase + 1) * STEPS_PER_PHASE;
    let free_lanes = (0..LANES).filter(|&l| !steps.clone().any(|s| raises(l, s))).count();
    assert!(free_lanes > 0 && free_lanes < LANES, "some lanes raise handoffs, some do not");
    // (lanes without a handoff finished, all lanes finished)
    let (done_tx, done_rx) = tokio::sync::watch::channel((0usize, 0usize));
    let done_tx = Arc::new(done_tx);
    let finished: Arc<Mutex<BTreeMap<usize, (Duration, bool)>>> = Arc::default();
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let (http, url, agent, sent, finished, done_tx) =
            (http.clone(), s.url.clone(), agent.to_owned(), sent.clone(), finished.clone(), done_tx.clone());
        lanes.push(tokio::spawn(async move {
            let id = format!("lane-{lane:03}");
            let mut waited = false;
            for step in phase * STEPS_PER_PHASE..(phase + 1) * STEPS_PER_PHASE {
                let checkpoint = format!("step-{step}");
                let (status, body) = post(&http, &format!("{url}/v1/lanes/{id}/checkpoints"), &agent, &format!("{id}-cp-{step}"), json!({ "name": checkpoint, "state": { "step": step } })).await;
                assert_eq!(status, 200, "{body}");
                sent.lock().await.checkpoints += 1;
                if !raises(lane, step) {
                    continue;
                }
                waited = true;
                let times_out = step % 2 == 0;
                let envelope = json!({
                    "type": "handoff.requested", "version": "1.0", "id": format!("{id}-h-{step}"), "request_id": format!("{id}-h-{step}"),
                    "lane_id": id, "occurred_at": "2026-11-21T10:00:00Z", "actor": { "kind": "agent", "id": "bot" },
                    "data": { "checkpoint": checkpoint, "trigger_class": if times_out { "risk" } else { "policy" }, "reason": "check",
                              "queue": "ops", "sla_seconds": if times_out { 1 } else { 600 }, "deadline_seconds": if times_out { 1 } else { 600 }, "timeout_action": "reject" },
                });
                let r = http.post(format!("{url}/v1/events")).bearer_auth(&agent).json(&envelope).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 202);
                sent.lock().await.handoffs += 1;
                // The agent waits for its decision; other lanes go on.
                loop {
                    let d: Value = http.get(format!("{url}/v1/lanes/{id}/decision?wait=10")).bearer_auth(&agent).send().await.unwrap().json().await.unwrap();
                    if d["decided"] == true {
                        let by_system = d["decision"]["by"] == "system";
                        let mut sent = sent.lock().await;
                        if by_system { sent.timed_out += 1 } else { sent.decided += 1 }
                        assert_eq!(d["decision"]["resume_from"], checkpoint, "resumes from its checkpoint");
                        break;
                    }
                }
            }
            finished.lock().await.insert(lane, (started.elapsed(), waited));
            done_tx.send_modify(|(free, all)| {
                *free += usize::from(!waited);
                *all += 1;
            });
        }));
    }
    let operator_task = {
        let (http, url, operator, mut done_rx) = (http.clone(), s.url.clone(), operator.to_owned(), done_rx.clone());
        tokio::spawn(async move {
            let free_done = tokio::time::timeout(FREE_LANES_WITHIN, done_rx.wait_for(|(free, _)| *free == free_lanes));
            assert!(
                free_done.await.is_ok(),
                "lanes without a handoff did not finish while every handoff waited undecided: a lane waited on another"
            );
            let deciding_started = started.elapsed();
            loop {
                let q: Value = http
                    .get(format!("{url}/v1/handoffs?status=OPEN&queue=ops"))
                    .bearer_auth(&operator)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for h in q["handoffs"].as_array().unwrap() {
                    if h["trigger_class"] == "policy" {
                        let id = h["handoff_id"].as_str().unwrap();
                        post(
                            &http,
                            &format!("{url}/v1/handoffs/{id}/decision"),
                            &operator,
                            &format!("decide-{id}"),
                            json!({ "action": "approve", "reason": "ok" }),
                        )
                        .await;
                    }
                }
                if q["handoffs"].as_array().unwrap().is_empty() && done_rx.borrow().1 == LANES {
                    return deciding_started;
                }
                // The queue is polled, as an operator's screen would; the lanes' own
                // long-polls are what wake them.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for l in lanes {
        l.await.unwrap();
    }
    let deciding_started = operator_task.await.unwrap();
    let finished = finished.lock().await;
    let free: Vec<Duration> = finished.values().filter(|(_, waited)| !waited).map(|(t, _)| *t).collect();
    assert_eq!(free.len(), free_lanes);
    let slowest_free = free.iter().max().unwrap();
    assert!(
        *slowest_free < deciding_started,
        "every lane without a handoff finished ({slowest_free:?}) before any operator decided ({deciding_started:?}): no lane waited on another"
    );
}

fn metric(text: &str, series: &str) -> usize {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse::<f64>().unwrap_or(0.0) as usize))
        .unwrap_or(0)
}

#[tokio::test]
async fn a_hundred_lanes_across_a_restart_account_for_every_event() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let body = json!({ "sub": "ann", "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": ["ops"], "ttl_seconds": 3600 });
    let operator = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for lane in 0..LANES {
        let (status, _) = s
            .send(
                "POST",
                "/v1/lanes",
                &agent,
                Some(&format!("create-{lane}")),
                Some(json!({ "lane_id": format!("lane-{lane:03}") })),
            )
            .await;
        assert_eq!(status, 201);
    }
    let sent = Arc::new(Mutex::new(Sent::default()));
    phase(&s, &agent, &operator, 0, sent.clone()).await;
    let before_restart = std::mem::take(&mut *sent.lock().await);

    let data = s.data_dir.clone();
    s.stop();
    let s = Server::start(&data);
    phase(&s, &agent, &operator, 1, sent.clone()).await;
    let after_restart = sent.lock().await;

    // Timelines hold everything sent, from both sides of the restart.
    let (mut checkpoints, mut handoffs, mut decided, mut expired) = (0, 0, 0, 0);
    for lane in 0..LANES {
        let (_, t) = s.send("GET", &format!("/v1/lanes/lane-{lane:03}/timeline"), &s.admin_token, None, None).await;
        for e in t["events"].as_array().unwrap() {
            match e["kind"].as_str().unwrap() {
                "lane.checkpoint_recorded" => checkpoints += 1,
                "handoff.requested" => handoffs += 1,
                "handoff.decided" => decided += 1,
                "handoff.expired" => expired += 1,
                _ => {}
            }
        }
    }
    let total = |f: fn(&Sent) -> usize| f(&before_restart) + f(&after_restart);
    assert_eq!(checkpoints, total(|s| s.checkpoints));
    assert_eq!(checkpoints, LANES * STEPS_PER_PHASE * 2);
    assert_eq!(handoffs, total(|s| s.handoffs));
    assert_eq!(decided, total(|s| s.decided));
    assert_eq!(expired, total(|s| s.timed_out));
    assert_eq!(handoffs, decided + expired, "every handoff was decided or timed out");
    let share = handoffs as f64 / checkpoints as f64;
    assert!((0.01..=0.05).contains(&share), "{share} of steps raised a handoff");

    // The metrics (counted since the restart) match the second phase.
    let text = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    let requested = metric(&text, "dispatch_handoffs_requested_total{trigger_class=\"policy\"}")
        + metric(&text, "dispatch_handoffs_requested_total{trigger_class=\"risk\"}");
    assert_eq!(requested, after_restart.handoffs, "{text}");
    assert_eq!(metric(&text, "dispatch_handoff_decisions_total{action=\"approve\"}"), after_restart.decided);
    assert_eq!(metric(&text, "dispatch_handoff_timeouts_total"), after_restart.timed_out);
    assert_eq!(metric(&text, "dispatch_open_handoffs{queue=\"ops\"}"), 0);
    eprintln!("sent before the restart {before_restart:?}, after {after_restart:?}");
    s.stop();
}
