//! Lanes across callers: handoff ids belong to one lane, and people see lanes, their
//! controls and their dead letters only through the queues they work.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, key};

async fn operator(s: &Server, sub: &str, queues: &[&str]) -> String {
    let body = json!({ "sub": sub, "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": queues, "ttl_seconds": 600 });
    s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await.1["token"].as_str().unwrap().to_owned()
}

/// A lane of `agent` with checkpoint c1 (and a callback, when given).
async fn lane(s: &Server, agent: &str, id: &str, callback: Option<&str>) {
    let (status, body) = s
        .send("POST", "/v1/lanes", agent, Some(&key()), Some(json!({ "lane_id": id, "callback_url": callback })))
        .await;
    assert_eq!(status, 201, "{body}");
    let cp = json!({ "name": "c1", "state": {} });
    assert_eq!(s.send("POST", &format!("/v1/lanes/{id}/checkpoints"), agent, Some(&key()), Some(cp)).await.0, 200);
}

fn requested(envelope_id: &str, lane: &str, queue: &str) -> Value {
    json!({ "type": "handoff.requested", "version": "1.0", "id": envelope_id, "request_id": key(), "lane_id": lane,
            "occurred_at": "2026-11-21T10:00:00Z", "actor": { "kind": "agent", "id": "bot" },
            "data": { "checkpoint": "c1", "trigger_class": "policy", "reason": "r", "context": {}, "queue": queue,
                      "sla_seconds": 600, "deadline_seconds": 3600, "timeout_action": "reject" } })
}

#[tokio::test]
async fn a_handoff_id_taken_by_one_lane_is_refused_for_another() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let alice = s.token("agent-a", "agent", &["*"], &["*"]).await;
    let mallory = s.token("agent-m", "agent", &["*"], &["*"]).await;
    lane(&s, &alice, "lane-a", None).await;
    lane(&s, &mallory, "lane-m", None).await;
    let (status, body) = s.send("POST", "/v1/events", &alice, None, Some(requested("h-1", "lane-a", "ops"))).await;
    assert!(status < 300, "{body}");
    let (status, body) = s.send("POST", "/v1/events", &mallory, None, Some(requested("h-1", "lane-m", "ops"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("HANDOFF_ID_TAKEN")), "{body}");
    let ops = operator(&s, "ann", &["ops"]).await;
    let (status, handoff) = s.send("GET", "/v1/handoffs/h-1", &ops, None, None).await;
    assert_eq!((status, handoff["lane_id"].as_str()), (200, Some("lane-a")), "{handoff}");
}

#[tokio::test]
async fn operators_see_lanes_and_dead_letters_only_through_their_queues() {
    let dir = support::tempdir();
    let s = Server::start_with(dir.path(), &["--callback-backoff-ms", "10", "--callback-allow-host", "127.0.0.1"]);
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let ops = operator(&s, "ann", &["ops"]).await;
    let fin = operator(&s, "fay", &["fin"]).await;
    // Nothing listens on port 9: every delivery fails and lands in the DLQ.
    for (id, queue, who) in [("lane-ops", "ops", &ops), ("lane-fin", "fin", &fin)] {
        lane(&s, &agent, id, Some("http://127.0.0.1:9/hook")).await;
        let (status, body) =
            s.send("POST", "/v1/events", &agent, None, Some(requested(&format!("h-{id}"), id, queue))).await;
        assert!(status < 300, "{body}");
        let decision = json!({ "action": "approve", "reason": "fine" });
        let (status, body) =
            s.send("POST", &format!("/v1/handoffs/h-{id}/decision"), who, Some(&key()), Some(decision)).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut all = Vec::new();
    for _ in 0..200 {
        all = s.send("GET", "/v1/dlq", &s.admin_token, None, None).await.1["deliveries"].as_array().unwrap().clone();
        if all.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(all.len(), 2, "the admin sees every dead letter");
    let (_, mine) = s.send("GET", "/v1/dlq", &ops, None, None).await;
    let lanes: Vec<&str> =
        mine["deliveries"].as_array().unwrap().iter().map(|d| d["lane_id"].as_str().unwrap()).collect();
    assert_eq!(lanes, vec!["lane-ops"], "{mine}");
    let fin_letter = all.iter().find(|d| d["lane_id"] == "lane-fin").unwrap()["id"].as_str().unwrap().to_owned();
    let (status, _) = s.send("POST", &format!("/v1/dlq/{fin_letter}/replay"), &ops, None, Some(json!({}))).await;
    assert_eq!(status, 404, "another queue's dead letter cannot be replayed");
    let (status, _) = s.send("POST", &format!("/v1/dlq/{fin_letter}/replay"), &fin, None, Some(json!({}))).await;
    assert_eq!(status, 202);

    // A handoff rerouted to another queue takes its lane with it.
    lane(&s, &agent, "lane-moving", None).await;
    let (status, _) =
        s.send("POST", "/v1/events", &agent, None, Some(requested("h-moving", "lane-moving", "ops"))).await;
    assert!(status < 300);
    assert_eq!(s.send("GET", "/v1/lanes/lane-moving", &ops, None, None).await.0, 200);
    let reroute = json!({ "action": "reroute", "reason": "finance decides", "reroute_to": "fin" });
    let ops_all = operator(&s, "boss", &["ops", "fin"]).await;
    let (status, body) = s.send("POST", "/v1/handoffs/h-moving/decision", &ops_all, Some(&key()), Some(reroute)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.send("GET", "/v1/lanes/lane-moving", &ops, None, None).await.0, 403, "no longer ann's");
    assert_eq!(s.send("GET", "/v1/lanes/lane-moving", &fin, None, None).await.0, 200);
    let escalate = json!({ "reason": "stuck" });
    let (status, _) = s.send("POST", "/v1/lanes/lane-moving/escalate", &ops, Some(&key()), Some(escalate)).await;
    assert_eq!(status, 403, "nor its controls");
}
