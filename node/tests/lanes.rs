//! Agent lanes and human handoffs over HTTP on `dispatch up`: the four failure modes
//! (duplicate events, delayed decisions, missing checkpoints, callbacks that fail
//! into the DLQ and are replayed), operator queues and controls, long-poll, freeze,
//! and the engineering view.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use support::{Server, key};
use tokio::sync::Mutex;

async fn operator(s: &Server, sub: &str, queues: &[&str]) -> String {
    let body = json!({ "sub": sub, "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": queues, "ttl_seconds": 600 });
    let (status, minted) = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await;
    assert_eq!(status, 201, "{minted}");
    minted["token"].as_str().unwrap().to_owned()
}

/// A lane of `agent` with checkpoint `c1`; returns its callback secret.
async fn lane(s: &Server, agent: &str, id: &str, callback: Option<&str>) -> String {
    let (status, body) = s
        .send("POST", "/v1/lanes", agent, Some(&key()), Some(json!({ "lane_id": id, "callback_url": callback })))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, cp) = s
        .send(
            "POST",
            &format!("/v1/lanes/{id}/checkpoints"),
            agent,
            Some(&key()),
            Some(json!({ "name": "c1", "state": { "step": 1 } })),
        )
        .await;
    assert_eq!(status, 200, "{cp}");
    body["callback_secret"].as_str().unwrap().to_owned()
}

fn envelope(kind: &str, request_id: &str, lane: &str, data: Value) -> Value {
    json!({ "type": kind, "version": "1.0", "id": format!("{request_id}-id"), "request_id": request_id, "lane_id": lane,
            "occurred_at": "2026-11-21T10:00:00Z", "actor": { "kind": "agent", "id": "bot" }, "data": data,
            "some_future_field": "ignored" })
}

fn handoff_data(checkpoint: &str, queue: &str, sla: u64, deadline: u64, action: &str) -> Value {
    json!({ "checkpoint": checkpoint, "trigger_class": "policy", "reason": "refund over limit", "context": { "amount": 900 },
            "queue": queue, "sla_seconds": sla, "deadline_seconds": deadline, "timeout_action": action })
}

/// Submits an envelope to `/v1/events`.
async fn event(s: &Server, token: &str, envelope: Value) -> (u16, Value) {
    s.send("POST", "/v1/events", token, None, Some(envelope)).await
}

async fn timeline_len(s: &Server, id: &str) -> usize {
    s.send("GET", &format!("/v1/lanes/{id}/timeline"), &s.admin_token, None, None).await.1["events"]
        .as_array()
        .unwrap()
        .len()
}

async fn lane_state(s: &Server, id: &str) -> Value {
    s.send("GET", &format!("/v1/lanes/{id}"), &s.admin_token, None, None).await.1
}

/// Polls the lane until `done` holds (bounded): timers and deliveries run on their own.
async fn until(s: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let l = lane_state(s, id).await;
        if done(&l) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("lane {id} never got there: {}", lane_state(s, id).await);
}

#[tokio::test]
async fn duplicate_events_replay_their_receipt_and_bad_envelopes_store_nothing() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    lane(&s, &agent, "lane-dup", None).await;

    let requested = envelope("handoff.requested", "req-1", "lane-dup", handoff_data("c1", "ops", 60, 600, "reject"));
    let (first_status, first) = event(&s, &agent, requested.clone()).await;
    assert_eq!(first_status, 202, "{first}");
    assert_eq!(first["type"], "audit.receipt");
    let (again_status, again) = event(&s, &agent, requested).await;
    assert_eq!(again_status, 200);
    assert_eq!(again["data"], first["data"], "a duplicate gets the original receipt (event id, position, hash)");
    assert_eq!(lane_state(&s, "lane-dup").await["handoffs"], 1, "one handoff, not two");

    let conflicting =
        envelope("handoff.requested", "req-1", "lane-dup", handoff_data("c1", "billing", 60, 600, "reject"));
    let (status, body) = event(&s, &agent, conflicting).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("IDEMPOTENCY_KEY_REUSED")));

    let before = timeline_len(&s, "lane-dup").await;
    let mut no_lane = envelope("handoff.requested", "req-2", "lane-dup", handoff_data("c1", "ops", 60, 600, "reject"));
    no_lane.as_object_mut().unwrap().remove("lane_id");
    let mut v2 = envelope("handoff.requested", "req-3", "lane-dup", handoff_data("c1", "ops", 60, 600, "reject"));
    v2["version"] = json!("2.0");
    let other_type = envelope("handoff.cancelled", "req-4", "lane-dup", json!({}));
    let second_lane = "lane-missing-checkpoint";
    lane(&s, &agent, second_lane, None).await;
    let missing =
        envelope("handoff.requested", "req-5", second_lane, handoff_data("never-recorded", "ops", 60, 600, "reject"));
    for (body, status, code) in [
        (no_lane, 400, "MALFORMED_ENVELOPE"),
        (v2, 400, "UNSUPPORTED_VERSION"),
        (other_type, 400, "UNKNOWN_EVENT_TYPE"),
        (missing, 409, "UNKNOWN_CHECKPOINT"),
    ] {
        let (got, answer) = event(&s, &agent, body).await;
        assert_eq!((got, answer["error"]["code"].as_str().unwrap_or_default()), (status, code), "{answer}");
    }
    assert_eq!(timeline_len(&s, "lane-dup").await, before, "refused envelopes store nothing");
    assert_eq!(lane_state(&s, second_lane).await["handoffs"], 0);

    let schema = support::get(format!("{}/v1/schemas/event-envelope.v1.json", s.url))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(schema["required"].as_array().unwrap().len(), 8);
    s.stop();
}

#[tokio::test]
async fn decisions_after_the_deadline_are_refused_and_the_timeout_action_applies() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let ops = operator(&s, "ann", &["ops"]).await;
    lane(&s, &agent, "lane-late", None).await;
    lane(&s, &agent, "lane-esc", None).await;
    let (_, r) = event(
        &s,
        &agent,
        envelope("handoff.requested", "late-1", "lane-late", handoff_data("c1", "ops", 1, 1, "reject")),
    )
    .await;
    assert_eq!(r["type"], "audit.receipt", "{r}");
    let (_, r) = event(
        &s,
        &agent,
        envelope("handoff.requested", "esc-1", "lane-esc", handoff_data("c1", "ops", 1, 60, "escalate")),
    )
    .await;
    assert_eq!(r["type"], "audit.receipt", "{r}");

    // The deadline (1 s, reject) passes: the handoff expires and the lane resumes.
    let late = until(&s, "lane-late", |l| l["handoff"]["status"] == "EXPIRED").await;
    assert_eq!((late["status"].clone(), late["handoff"]["decision"]["by"].clone()), (json!("ACTIVE"), json!("system")));
    let handoff = late["handoff"]["handoff_id"].as_str().unwrap();
    let decide = json!({ "action": "approve", "reason": "sorry, late" });
    let (status, body) =
        s.send("POST", &format!("/v1/handoffs/{handoff}/decision"), &ops, Some(&key()), Some(decide)).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("HANDOFF_NOT_OPEN")), "{body}");

    // The first-response SLA (1 s) is missed: the lane escalates; it can still be decided.
    let escalated = until(&s, "lane-esc", |l| l["status"] == "BLOCKED").await;
    assert_eq!(escalated["handoff"]["escalated"], true);
    let id = escalated["handoff"]["handoff_id"].as_str().unwrap();
    let (status, _) = s
        .send(
            "POST",
            &format!("/v1/handoffs/{id}/decision"),
            &ops,
            Some(&key()),
            Some(json!({ "action": "approve", "reason": "ok" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(lane_state(&s, "lane-esc").await["status"], "ACTIVE");

    // The timers are durable: one set before a restart fires after it.
    lane(&s, &agent, "lane-restart", None).await;
    let (_, r) = event(
        &s,
        &agent,
        envelope("handoff.requested", "rs-1", "lane-restart", handoff_data("c1", "ops", 1, 1, "reject")),
    )
    .await;
    assert_eq!(r["type"], "audit.receipt");
    let data = s.data_dir.clone();
    s.stop();
    let s = Server::start(&data);
    until(&s, "lane-restart", |l| l["handoff"]["status"] == "EXPIRED").await;
    let metrics = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("dispatch_handoff_timeouts_total 1"), "{metrics}");
    s.stop();
}

/// A callback receiver that fails while `failing` is set, recording every request.
#[derive(Clone, Default)]
struct Receiver {
    failing: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    r.failing.store(true, Ordering::SeqCst);
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let r = state.clone();
            async move {
                r.hits.fetch_add(1, Ordering::SeqCst);
                if r.failing.load(Ordering::SeqCst) {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                r.received.lock().await.push((headers, body));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

#[tokio::test]
async fn callbacks_that_keep_failing_go_to_the_dlq_and_a_replay_delivers_them_signed() {
    let dir = support::tempdir();
    let s = Server::start_with(dir.path(), &["--callback-backoff-ms", "20", "--callback-allow-host", "127.0.0.1"]);
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let ops = operator(&s, "ann", &["ops"]).await;
    let (url, hook) = receiver().await;
    let secret = lane(&s, &agent, "lane-cb", Some(&url)).await;
    let (status, created) = s
        .send(
            "POST",
            "/v1/lanes/lane-cb/handoffs",
            &agent,
            Some(&key()),
            Some(handoff_data("c1", "ops", 60, 600, "reject")),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let handoff = created["lane"]["handoff"]["handoff_id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .send(
            "POST",
            &format!("/v1/handoffs/{handoff}/decision"),
            &ops,
            Some(&key()),
            Some(json!({ "action": "approve", "reason": "fine" })),
        )
        .await;
    assert_eq!(status, 200);

    // Six failed attempts (20 ms, doubling), then the dead-letter queue.
    let dlq = loop {
        let (_, d) = s.send("GET", "/v1/dlq", &ops, None, None).await;
        if !d["deliveries"].as_array().unwrap().is_empty() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let entry = &dlq["deliveries"][0];
    assert_eq!((entry["lane_id"].clone(), entry["attempts"].clone()), (json!("lane-cb"), json!(6)));
    assert_eq!(hook.hits.load(Ordering::SeqCst), 6);

    hook.failing.store(false, Ordering::SeqCst);
    let (status, _) =
        s.send("POST", &format!("/v1/dlq/{}/replay", entry["id"].as_str().unwrap()), &ops, None, Some(json!({}))).await;
    assert_eq!(status, 202);
    for _ in 0..100 {
        if !hook.received.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = hook.received.lock().await.clone();
    assert_eq!(received.len(), 1, "delivered once after the replay");
    let (headers, body) = &received[0];
    let envelope: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (envelope["type"].clone(), envelope["data"]["action"].clone()),
        (json!("handoff.decided"), json!("approve"))
    );
    let signature = headers["x-dispatch-signature"].to_str().unwrap();
    assert_eq!(signature, dispatch_node::lanes::signature(secret.as_bytes(), body), "signed with the lane's secret");
    let (_, d) = s.send("GET", "/v1/dlq", &ops, None, None).await;
    assert!(d["deliveries"].as_array().unwrap().is_empty());
    let metrics = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    for series in ["dispatch_callback_attempts_total 7", "dispatch_callback_failures_total 6", "dispatch_dlq_depth 0"] {
        assert!(metrics.contains(series), "missing {series}");
    }
    s.stop();
}

#[tokio::test]
async fn operators_work_their_queues_and_agents_long_poll_for_the_decision() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let ops = operator(&s, "ann", &["ops"]).await;
    let billing = operator(&s, "bob", &["billing"]).await;
    let engineer = s.token("eve", "engineer", &["*"], &["*"]).await;
    lane(&s, &agent, "lane-ops", None).await;
    lane(&s, &agent, "lane-bill", None).await;
    let (_, a) = s
        .send(
            "POST",
            "/v1/lanes/lane-ops/handoffs",
            &agent,
            Some(&key()),
            Some(handoff_data("c1", "ops", 60, 600, "reject")),
        )
        .await;
    let (_, b) = s
        .send(
            "POST",
            "/v1/lanes/lane-bill/handoffs",
            &agent,
            Some(&key()),
            Some(handoff_data("c1", "billing", 60, 600, "reject")),
        )
        .await;
    let ops_handoff = a["lane"]["handoff"]["handoff_id"].as_str().unwrap().to_owned();
    let bill_handoff = b["lane"]["handoff"]["handoff_id"].as_str().unwrap().to_owned();

    // Each operator sees only their queues.
    let (_, q) = s.send("GET", "/v1/handoffs?status=OPEN", &ops, None, None).await;
    let ids: Vec<&str> = q["handoffs"].as_array().unwrap().iter().map(|h| h["handoff_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![ops_handoff.as_str()]);
    let (status, _) = s.send("GET", "/v1/handoffs?queue=billing", &ops, None, None).await;
    assert_eq!(status, 403);
    let (status, _) = s.send("GET", &format!("/v1/handoffs/{bill_handoff}"), &ops, None, None).await;
    assert_eq!(status, 403);
    // Reroute only within the operator's queues; add_context keeps it open.
    let reroute = json!({ "action": "reroute", "reason": "not mine", "reroute_to": "billing" });
    let (status, body) =
        s.send("POST", &format!("/v1/handoffs/{ops_handoff}/decision"), &ops, Some(&key()), Some(reroute)).await;
    assert_eq!((status, body["error"]["code"].clone()), (403, json!("QUEUE_FORBIDDEN")));
    let context = json!({ "action": "add_context", "reason": "need the invoice", "context": { "invoice": "INV-1" } });
    let (status, body) =
        s.send("POST", &format!("/v1/handoffs/{ops_handoff}/decision"), &ops, Some(&key()), Some(context)).await;
    assert_eq!((status, body["lane"]["handoff"]["status"].clone()), (200, json!("OPEN")));

    // The agent long-polls; the operator approves meanwhile.
    let poll = {
        let (url, agent) = (format!("{}/v1/lanes/lane-ops/decision?wait=20", s.url), agent.clone());
        tokio::spawn(async move {
            support::client_builder()
                .build()
                .unwrap()
                .get(url)
                .bearer_auth(agent)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await; // let the poll start waiting; the answer must come from the decision
    let approve = json!({ "action": "approve", "reason": "invoice checks out" });
    let (status, _) = s
        .send("POST", &format!("/v1/handoffs/{ops_handoff}/decision"), &ops, Some(&key()), Some(approve.clone()))
        .await;
    assert_eq!(status, 200);
    let decided = tokio::time::timeout(Duration::from_secs(10), poll).await.unwrap().unwrap();
    assert_eq!(
        (decided["decided"].clone(), decided["decision"]["action"].clone(), decided["decision"]["resume_from"].clone()),
        (json!(true), json!("approve"), json!("c1"))
    );
    let (status, body) =
        s.send("POST", &format!("/v1/handoffs/{ops_handoff}/decision"), &ops, Some(&key()), Some(approve)).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("HANDOFF_NOT_OPEN")));

    // Operator controls, each with a reason and an audit event.
    let control = |path: &str, body: Value| {
        let (s, ops, path) = (&s, ops.clone(), format!("/v1/lanes/lane-ops/{path}"));
        async move { s.send("POST", &path, &ops, Some(&key()), Some(body)).await }
    };
    assert_eq!(control("reassign-owner", json!({ "owner": "carl", "reason": "x" })).await.0, 409);
    assert_eq!(control("assign-owner", json!({ "owner": "carl", "reason": "on call" })).await.0, 200);
    assert_eq!(control("reassign-owner", json!({ "owner": "dana", "reason": "shift change" })).await.0, 200);
    assert_eq!(s.send("GET", "/v1/lanes/lane-ops/owner", &ops, None, None).await.1["owner"], "dana");
    assert_eq!(control("unblock", json!({ "reason": "x" })).await.0, 409, "not blocked");
    assert_eq!(control("escalate", json!({ "reason": "customer called" })).await.1["lane"]["status"], "BLOCKED");
    assert_eq!(control("unblock", json!({ "reason": "handled" })).await.1["lane"]["status"], "ACTIVE");
    assert_eq!(control("override-close", json!({ "reason": "done" })).await.0, 422);
    assert_eq!(
        control("override-close", json!({ "reason": "human_override: finished by phone" })).await.1["lane"]["status"],
        "CLOSED"
    );
    let (_, timeline) = s.send("GET", "/v1/lanes/lane-ops/timeline", &ops, None, None).await;
    let kinds: Vec<&str> = timeline["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["lane.owner_assigned", "lane.escalated", "lane.unblocked", "lane.closed"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }

    // Freeze: new lanes refused, existing ones and reads keep working.
    let (status, _) =
        s.send("POST", "/v1/admin/lanes/freeze", &s.admin_token, None, Some(json!({ "reason": "incident 42" }))).await;
    assert_eq!(status, 200);
    let (status, body) = s.send("POST", "/v1/lanes", &agent, Some(&key()), Some(json!({}))).await;
    assert_eq!((status, body["error"]["code"].clone()), (503, json!("LANES_FROZEN")));
    let (status, _) = s
        .send(
            "POST",
            &format!("/v1/handoffs/{bill_handoff}/decision"),
            &billing,
            Some(&key()),
            Some(json!({ "action": "reject", "reason": "no" })),
        )
        .await;
    assert_eq!(status, 200, "decisions keep working while frozen");
    assert_eq!(s.send("GET", "/v1/lanes/lane-bill", &agent, None, None).await.0, 200);
    s.send("POST", "/v1/admin/lanes/unfreeze", &s.admin_token, None, Some(json!({ "reason": "over" }))).await;
    assert_eq!(s.send("POST", "/v1/lanes", &agent, Some(&key()), Some(json!({}))).await.0, 201);

    // The engineering view: aggregates only.
    let (status, insights) = s.send("GET", "/v1/insights/handoffs", &engineer, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            insights["handoffs"].clone(),
            insights["decision_mix"]["approve"].clone(),
            insights["decision_mix"]["reject"].clone()
        ),
        (json!(2), json!(1), json!(1))
    );
    assert!(insights["by_trigger_class"]["policy"]["decision_p50_ms"].is_number());
    let text = insights.to_string();
    assert!(!text.contains("refund") && !text.contains("INV-1") && !text.contains("lane-ops"), "no content in {text}");
    assert_eq!(s.send("GET", "/v1/insights/handoffs", &ops, None, None).await.0, 403);
    assert_eq!(s.send("GET", "/v1/handoffs", &engineer, None, None).await.0, 403, "engineers see no content");

    // The same controls from the CLI.
    let cli = |token: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args(args)
            .args(["--server", &s.url, "--token", token])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = cli(&ops, &["lane", "assign-owner", "lane-bill", "--owner", "erin", "--reason", "on call"]);
    assert!(!ok && err.contains("FORBIDDEN"), "ops may not touch a billing lane: {err}");
    let (ok, out, err) =
        cli(&billing, &["lane", "assign-owner", "lane-bill", "--owner", "erin", "--reason", "on call"]);
    assert!(ok && out.contains("owner:       erin"), "{out}{err}");
    let (ok, out, _) = cli(&billing, &["lane", "owner", "lane-bill"]);
    assert!(ok && out.trim() == "erin", "{out}");
    let (ok, out, _) = cli(&billing, &["lane", "inspect", "lane-bill", "--json"]);
    assert!(ok && serde_json::from_str::<Value>(&out).unwrap()["owner"] == "erin");
    let (ok, _, err) = cli(&billing, &["lane", "override-close", "lane-bill", "--reason", "because"]);
    assert!(!ok && err.contains("human_override:"), "{err}");
    let (ok, out, _) = cli(&s.admin_token, &["admin", "freeze-lanes", "--reason", "drill"]);
    assert!(ok && out.contains("frozen"), "{out}");
    let (ok, _, _) = cli(&s.admin_token, &["admin", "unfreeze-lanes", "--reason", "drill over"]);
    assert!(ok);

    let metrics = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    for series in [
        "dispatch_handoffs_requested_total{trigger_class=\"policy\"} 2",
        "dispatch_handoff_decisions_total{action=\"approve\"} 1",
        "dispatch_handoff_decisions_total{action=\"reject\"} 1",
        "dispatch_open_handoffs{queue=\"ops\"} 0",
        "dispatch_handoff_first_response_seconds_count{trigger_class=\"policy\"} 2",
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
    if support::have_prometheus_tool("promtool") {
        support::promtool_check(&metrics, "the orchestrator after lane traffic");
    }
    s.stop();
}

/// A lane's earlier handoffs leave its state (its answers stay the size of one
/// handoff however many it had) but stay readable by id, in the queue's list and in
/// the insights — also after a restart, when the lane wakes from its snapshot.
#[tokio::test]
async fn earlier_handoffs_stay_readable_while_the_lane_answers_only_its_current_one() {
    let dir = support::tempdir();
    let mut s = Server::start(dir.path());
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    lane(&s, &agent, "lane-long", None).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let path = "/v1/lanes/lane-long/handoffs";
        let (status, a) =
            s.send("POST", path, &agent, Some(&key()), Some(handoff_data("c1", "ops", 60, 600, "reject"))).await;
        assert_eq!(status, 201, "{a}");
        let id = a["lane"]["handoff"]["handoff_id"].as_str().unwrap().to_owned();
        let decision = json!({ "action": "approve", "reason": format!("round {n}") });
        let path = format!("/v1/handoffs/{id}/decision");
        assert_eq!(s.send("POST", &path, &s.admin_token, Some(&key()), Some(decision)).await.0, 200);
        ids.push(id);
    }
    // Enough checkpoints that the lane has a snapshot to wake from, and events after it.
    for n in 0..20 {
        let body = json!({ "name": format!("c{}", n % 3), "state": { "n": n } });
        let (status, _) = s.send("POST", "/v1/lanes/lane-long/checkpoints", &agent, Some(&key()), Some(body)).await;
        assert_eq!(status, 200);
    }
    for round in ["before", "after"] {
        let l = lane_state(&s, "lane-long").await;
        assert_eq!((l["handoffs"].clone(), l["handoff"]["handoff_id"].clone()), (json!(3), json!(ids[2])), "{round}");
        assert!(l.get("history").is_none(), "{round}: the lane answers its current handoff only: {l}");
        for (n, id) in ids.iter().enumerate() {
            let (status, h) = s.send("GET", &format!("/v1/handoffs/{id}"), &s.admin_token, None, None).await;
            assert_eq!((status, h["status"].clone()), (200, json!("DECIDED")), "{round}: {id}");
            assert_eq!(h["decision"]["reason"], format!("round {n}"), "{round}");
        }
        let (_, list) = s.send("GET", "/v1/handoffs?queue=ops", &s.admin_token, None, None).await;
        let listed: Vec<&str> =
            list["handoffs"].as_array().unwrap().iter().map(|h| h["handoff_id"].as_str().unwrap()).collect();
        assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>(), "{round}");
        let (_, insights) = s.send("GET", "/v1/insights/handoffs", &s.admin_token, None, None).await;
        assert_eq!((insights["handoffs"].clone(), insights["decision_mix"]["approve"].clone()), (json!(3), json!(3)));
        s.stop();
        s = Server::start(dir.path());
    }
}
