//! The canonical ticket lifecycle over HTTP against the real binary, and a restart
//! that must keep every ticket and its timeline.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use serde_json::{Value, json};
use support::{Crew, Server, WINDOW};

async fn step(s: &Server, token: &str, id: &str, path: &str, body: Value) -> (u16, Value) {
    s.send("POST", &format!("/v1/tickets/{id}/{path}"), token, Some(&uuid::Uuid::new_v4().to_string()), Some(body))
        .await
}

#[tokio::test]
async fn canonical_lifecycle_then_restart_keeps_everything() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let id = support::new_ticket(&s, &crew.dispatcher).await;
    let window: Value = serde_json::from_str(WINDOW).unwrap();

    let expect = |(status, body): (u16, Value), state: &str| {
        assert_eq!(status, 200, "expected {state}: {body}");
        assert_eq!(body["state"], state, "{body}");
        body
    };
    expect(
        step(
            &s,
            &crew.dispatcher,
            &id,
            "triage",
            json!({ "workflow_outcome": "READY_TO_SCHEDULE", "priority": "HIGH" }),
        )
        .await,
        "READY_TO_SCHEDULE",
    );
    expect(
        step(&s, &crew.dispatcher, &id, "schedule/propose", json!({ "windows": [window] })).await,
        "SCHEDULE_PROPOSED",
    );
    expect(step(&s, &crew.dispatcher, &id, "schedule/confirm", json!({ "window": window })).await, "SCHEDULED");
    expect(
        step(&s, &crew.dispatcher, &id, "assignment/dispatch", json!({ "technician_id": "tech-1" })).await,
        "DISPATCHED",
    );
    expect(step(&s, &crew.technician, &id, "tech/check-in", json!({})).await, "IN_PROGRESS");
    expect(
        step(
            &s,
            &crew.technician,
            &id,
            "tech/request-change",
            json!({ "reason": "strike plate cracked", "change_summary": "replace strike plate" }),
        )
        .await,
        "APPROVAL_REQUIRED",
    );
    expect(
        step(&s, &crew.manager, &id, "approval/decide", json!({ "decision": "approved", "reason": "within budget" }))
            .await,
        "IN_PROGRESS",
    );

    let before = s.blob(&crew.technician, b"jpeg: door before").await;
    expect(
        step(
            &s,
            &crew.technician,
            &id,
            "evidence",
            json!({ "kind": "photo", "uri": before, "evidence_key": "photo_before" }),
        )
        .await,
        "IN_PROGRESS",
    );

    // Completion with evidence and checklist missing is refused, naming exactly what is missing.
    let checklist = json!({ "checklist": { "latch_tested": true, "strike_aligned": true } });
    let (status, body) =
        step(&s, &crew.technician, &id, "tech/complete", json!({ "checklist": { "latch_tested": true } })).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "CLOSEOUT_REQUIREMENTS_INCOMPLETE");
    assert_eq!(body["error"]["details"]["missing_evidence_keys"], json!(["photo_after"]));
    assert_eq!(body["error"]["details"]["missing_checklist_items"], json!(["strike_aligned"]));
    assert_eq!(body["error"]["policy"], "evidence");

    let after = s.blob(&crew.technician, b"jpeg: door after").await;
    expect(
        step(
            &s,
            &crew.technician,
            &id,
            "evidence",
            json!({ "kind": "photo", "uri": after, "evidence_key": "photo_after" }),
        )
        .await,
        "IN_PROGRESS",
    );
    // Without a signature or a reason for its absence, completion is still refused.
    let (status, body) = step(&s, &crew.technician, &id, "tech/complete", checklist.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("MISSING_SIGNATURE_CONFIRMATION")), "{body}");
    let signature = s.blob(&crew.technician, b"svg: signature").await;
    expect(
        step(
            &s,
            &crew.technician,
            &id,
            "evidence",
            json!({ "kind": "signature", "uri": signature, "evidence_key": "customer_signature" }),
        )
        .await,
        "IN_PROGRESS",
    );

    expect(step(&s, &crew.technician, &id, "tech/complete", checklist).await, "COMPLETED_PENDING_VERIFICATION");
    expect(step(&s, &crew.qa, &id, "qa/verify", json!({ "notes": "photos match" })).await, "VERIFIED");
    expect(
        step(&s, &crew.billing, &id, "billing/generate-invoice", json!({ "amount_cents": 18500, "currency": "USD" }))
            .await,
        "INVOICED",
    );
    let closed = expect(step(&s, &crew.billing, &id, "close", json!({})).await, "CLOSED");
    assert_eq!(closed["version"], 15, "one event per accepted command, creation included");

    // The timeline: every accepted command once, in order, each linked to the one before.
    let (status, timeline) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &crew.dispatcher, None, None).await;
    assert_eq!(status, 200);
    let events = timeline["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ticket.created",
            "ticket.triaged",
            "ticket.schedule_proposed",
            "ticket.schedule_confirmed",
            "ticket.dispatched",
            "ticket.checked_in",
            "ticket.change_requested",
            "ticket.approval_decided",
            "ticket.evidence_added",
            "ticket.evidence_added",
            "ticket.evidence_added",
            "ticket.completed",
            "ticket.verified",
            "ticket.invoiced",
            "ticket.closed",
        ][..kinds.len()]
    );
    assert_eq!(kinds.len(), 15);
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "hash chain broken at seq {}", pair[1]["seq"]);
    }
    assert_eq!(events[1]["before_state"], "NEW");
    assert_eq!(events[1]["after_state"], "READY_TO_SCHEDULE");
    assert_eq!(events[5]["actor"], json!({ "type": "user", "id": "tech-1", "role": "technician" }));
    assert_eq!(events[5]["tool"], "tech.check_in");
    assert!(events.iter().all(|e| e["request_id"].as_str().is_some_and(|r| !r.is_empty())));

    // Restart on the same data dir: the ticket and its timeline are unchanged.
    let (_, ticket_before) = s.send("GET", &format!("/v1/tickets/{id}"), &crew.dispatcher, None, None).await;
    s.stop();
    let s = Server::start(dir.path());
    let (status, ticket_after) = s.send("GET", &format!("/v1/tickets/{id}"), &crew.dispatcher, None, None).await;
    assert_eq!(status, 200, "the old token still verifies: the signing key persisted");
    assert_eq!(ticket_after, ticket_before);
    let (_, timeline_after) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &crew.dispatcher, None, None).await;
    assert_eq!(timeline_after, timeline);
    let (_, listed) = s.send("GET", "/v1/tickets?state=CLOSED", &crew.dispatcher, None, None).await;
    assert_eq!(listed["tickets"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn emergency_bypass_and_approval_at_triage() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;

    // TRIAGED → DISPATCHED: refused without the bypass, without a reason, then accepted with both.
    let id = support::new_ticket(&s, &crew.dispatcher).await;
    step(&s, &crew.dispatcher, &id, "triage", json!({ "workflow_outcome": "TRIAGED" })).await;
    let (status, body) =
        step(&s, &crew.dispatcher, &id, "assignment/dispatch", json!({ "technician_id": "tech-1" })).await;
    assert_eq!((status, body["error"]["details"]["from_state"].as_str()), (409, Some("TRIAGED")), "{body}");
    let (status, body) = step(
        &s,
        &crew.dispatcher,
        &id,
        "assignment/dispatch",
        json!({ "technician_id": "tech-1", "dispatch_mode": "EMERGENCY_BYPASS", "manager_confirmation": "mgr-1" }),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("VALIDATION_ERROR")), "{body}");
    // A manager's name typed by the dispatcher is no confirmation; a manager's signed one is.
    let bypass = |confirmation: &str| {
        json!({ "technician_id": "tech-1", "dispatch_mode": "EMERGENCY_BYPASS",
        "reason": "no heat", "manager_confirmation": confirmation })
    };
    let (status, body) = step(&s, &crew.dispatcher, &id, "assignment/dispatch", bypass("mgr-1")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("VALIDATION_ERROR")), "{body}");
    let confirm = format!("/v1/tickets/{id}/assignment/bypass-confirmation");
    let (status, body) = s.send("POST", &confirm, &crew.dispatcher, None, Some(json!({ "reason": "no heat" }))).await;
    assert_eq!(status, 403, "a dispatcher cannot confirm: {body}");
    let (status, confirmation) =
        s.send("POST", &confirm, &crew.manager, None, Some(json!({ "reason": "no heat" }))).await;
    assert_eq!(status, 201, "{confirmation}");
    let token = confirmation["confirmation"].as_str().unwrap();
    let (status, body) = step(&s, &crew.manager, &id, "assignment/dispatch", bypass(token)).await;
    assert_eq!(status, 422, "the confirming manager cannot dispatch alone: {body}");
    let other = support::new_ticket(&s, &crew.dispatcher).await;
    step(&s, &crew.dispatcher, &other, "triage", json!({ "workflow_outcome": "TRIAGED" })).await;
    let (status, _) = step(&s, &crew.dispatcher, &other, "assignment/dispatch", bypass(token)).await;
    assert_eq!(status, 422, "a confirmation is for one ticket");
    let (status, body) = step(&s, &crew.dispatcher, &id, "assignment/dispatch", bypass(token)).await;
    assert_eq!(
        (status, body["state"].as_str(), body["emergency_reason"].as_str()),
        (200, Some("DISPATCHED"), Some("no heat")),
        "{body}"
    );
    let (_, timeline) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &crew.manager, None, None).await;
    let dispatched = timeline["events"].as_array().unwrap().iter().find(|e| e["after_state"] == "DISPATCHED").unwrap();
    assert_eq!(dispatched["actor"]["id"], "disp-1", "the dispatcher acted");
    assert_eq!(dispatched["payload"]["manager_confirmation"], "mgr-1", "the manager confirmed: {dispatched}");

    // Approval raised at triage: approved goes to scheduling, denied cancels.
    for (decision, state) in [("approved", "READY_TO_SCHEDULE"), ("denied", "CANCELLED")] {
        let id = support::new_ticket(&s, &crew.dispatcher).await;
        let (_, body) =
            step(&s, &crew.dispatcher, &id, "triage", json!({ "workflow_outcome": "APPROVAL_REQUIRED" })).await;
        assert_eq!(body["state"], "APPROVAL_REQUIRED");
        let (status, body) =
            step(&s, &crew.manager, &id, "approval/decide", json!({ "decision": decision, "reason": "policy" })).await;
        assert_eq!((status, body["state"].as_str()), (200, Some(state)), "{body}");
    }
}

#[tokio::test]
async fn read_models_show_the_actions_a_caller_may_take() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let id = support::dispatched_ticket(&s, &crew).await;

    let (status, cockpit) = s.send("GET", "/v1/ux/dispatcher/cockpit", &crew.dispatcher, None, None).await;
    assert_eq!(status, 200, "{cockpit}");
    let row = cockpit["queue"].as_array().unwrap().iter().find(|r| r["ticket_id"] == id.as_str()).unwrap();
    assert_eq!(row["assignee"], "tech-1");
    assert!(row["sla"]["remaining_seconds"].as_i64().unwrap() > 0);
    let action = |tool: &str| row["actions"].as_array().unwrap().iter().find(|a| a["tool"] == tool).unwrap().clone();
    assert_eq!(action("ticket.cancel")["enabled"], true);
    assert_eq!(action("tech.check_in")["disabled_reason"]["policy"], "role", "a dispatcher cannot check in");
    assert_eq!(action("ticket.triage")["disabled_reason"]["policy"], "state", "a dispatcher may triage, but not now");
    assert_eq!(action("approval.decide")["disabled_reason"]["policy"], "role", "role is reported before state");

    let (status, packet) =
        s.send("GET", &format!("/v1/ux/technician/job-packet/{id}"), &crew.technician, None, None).await;
    assert_eq!(status, 200, "{packet}");
    assert_eq!(packet["closeout"]["missing_evidence_keys"], json!(["photo_after", "photo_before"]));
    assert_eq!(packet["closeout"]["ready"], false);
    let check_in = packet["actions"].as_array().unwrap().iter().find(|a| a["tool"] == "tech.check_in").unwrap();
    assert_eq!(check_in["enabled"], true);
    let complete = packet["actions"].as_array().unwrap().iter().find(|a| a["tool"] == "tech.complete").unwrap();
    assert_eq!(complete["disabled_reason"]["policy"], "state");
    assert_eq!(packet["timeline"].as_array().unwrap().len(), 5);

    // A technician in scope but not on the job is told why.
    let other = s.token("tech-2", "technician", &["acct-1"], &["*"]).await;
    let (_, packet) = s.send("GET", &format!("/v1/ux/technician/job-packet/{id}"), &other, None, None).await;
    let check_in = packet["actions"].as_array().unwrap().iter().find(|a| a["tool"] == "tech.check_in").unwrap();
    assert_eq!(check_in["enabled"], false);
    assert!(check_in["disabled_reason"]["message"].as_str().unwrap().contains("assigned technician"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_loses_no_acknowledged_command() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let token = Crew::new(&s).await.dispatcher;
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (url, token, acked) = (s.url.clone(), token.clone(), acked_tx.clone());
        clients.push(tokio::spawn(async move {
            let http = support::client_builder().build().unwrap();
            let body =
                json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "LOCKOUT", "summary": "x" });
            // Bounded: at most 500 creates per client; stops at the first refused connection.
            for _ in 0..500 {
                let sent = http
                    .post(format!("{url}/v1/tickets"))
                    .bearer_auth(&token)
                    .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                    .json(&body)
                    .send()
                    .await;
                let Ok(resp) = sent else { break };
                if resp.status() != 201 {
                    break;
                }
                let Ok(ticket) = resp.json::<Value>().await else { break };
                let _ = acked.send(ticket["id"].as_str().unwrap_or_default().to_owned());
            }
        }));
    }
    drop(acked_tx);
    let mut acked = Vec::new();
    while acked.len() < 100 {
        acked.push(acked_rx.recv().await.expect("clients stopped before 100 acknowledgements"));
    }
    // SIGTERM while the clients are still sending; stop() asserts a clean exit.
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    for c in clients {
        c.await.unwrap();
    }
    while let Some(id) = acked_rx.recv().await {
        acked.push(id);
    }

    let s = Server::start(dir.path());
    for id in &acked {
        let (status, _) = s.send("GET", &format!("/v1/tickets/{id}"), &s.admin_token, None, None).await;
        assert_eq!(status, 200, "acknowledged ticket {id} is missing after a SIGTERM");
    }
    println!("{} acknowledged creates survived SIGTERM under load", acked.len());
}

#[tokio::test]
async fn lists_page_in_creation_order_and_only_within_scope() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(support::new_ticket(&s, &crew.dispatcher).await);
        if i % 2 == 0 {
            // Interleave tickets of another account, which the dispatcher may not see.
            let body =
                json!({ "account_id": "acct-9", "site_id": "site-1", "incident_type": "LOCKOUT", "summary": "x" });
            let (status, _) = s
                .send("POST", "/v1/tickets", &s.admin_token, Some(&uuid::Uuid::new_v4().to_string()), Some(body))
                .await;
            assert_eq!(status, 201);
        }
    }
    let mut seen = Vec::new();
    let mut path = "/v1/tickets?site_id=site-1&limit=2".to_owned();
    loop {
        let (status, page) = s.send("GET", &path, &crew.dispatcher, None, None).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<String> =
            page["tickets"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next_after"].as_str() {
            Some(next) => path = format!("/v1/tickets?site_id=site-1&limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, mine, "every visible ticket once, oldest first, none out of scope");
    let (_, all) = s.send("GET", "/v1/tickets?state=NEW", &s.admin_token, None, None).await;
    assert_eq!(all["tickets"].as_array().unwrap().len(), 8);
    let (status, err) = s.send("GET", "/v1/tickets?after=yesterday", &crew.dispatcher, None, None).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")));
}
