//! Everything that must be refused over HTTP: invalid transitions, idempotency
//! misuse, bad input, and policy. Each refusal writes nothing.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use serde_json::{Value, json};
use support::{Crew, Server, key};

#[tokio::test]
async fn every_invalid_transition_from_new_is_refused_and_writes_nothing() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let id = support::new_ticket(&s, &crew.dispatcher).await;
    let w: Value = serde_json::from_str(support::WINDOW).unwrap();
    let commands = [
        ("schedule/propose", &crew.dispatcher, json!({ "windows": [w.clone()] }), "SCHEDULE_PROPOSED"),
        ("schedule/confirm", &crew.dispatcher, json!({ "window": w }), "SCHEDULED"),
        ("assignment/dispatch", &crew.dispatcher, json!({ "technician_id": "tech-1" }), "DISPATCHED"),
        ("approval/decide", &crew.manager, json!({ "decision": "approved", "reason": "r" }), "IN_PROGRESS"),
        ("qa/verify", &crew.qa, json!({}), "VERIFIED"),
        ("billing/generate-invoice", &crew.billing, json!({ "amount_cents": 1, "currency": "USD" }), "INVOICED"),
        ("close", &crew.billing, json!({}), "CLOSED"),
    ];
    for (path, token, body, to) in commands {
        let (status, err) = s.send("POST", &format!("/v1/tickets/{id}/{path}"), token, Some(&key()), Some(body)).await;
        assert_eq!(status, 409, "{path}: {err}");
        assert_eq!(err["error"]["code"], "INVALID_STATE_TRANSITION", "{path}");
        assert_eq!(err["error"]["details"], json!({ "from_state": "NEW", "to_state": to }), "{path}");
    }
    assert_eq!(s.timeline_len(&id).await, 1, "refusals wrote nothing");

    // After cancellation nothing more is possible, not even a second cancel.
    let (status, _) = s
        .send(
            "POST",
            &format!("/v1/tickets/{id}/cancel"),
            &crew.dispatcher,
            Some(&key()),
            Some(json!({ "reason": "duplicate" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, err) = s
        .send(
            "POST",
            &format!("/v1/tickets/{id}/cancel"),
            &crew.dispatcher,
            Some(&key()),
            Some(json!({ "reason": "again" })),
        )
        .await;
    assert_eq!((status, err["error"]["details"]["from_state"].as_str()), (409, Some("CANCELLED")));
    assert_eq!(s.timeline_len(&id).await, 2);
}

#[tokio::test]
async fn idempotency_replays_refuses_reuse_and_requires_a_key() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let body =
        json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "LOCKOUT", "summary": "locked out" });

    let (status, _, first) = s
        .send_raw("POST", "/v1/tickets", &crew.dispatcher, Some("create-1"), Some(body.to_string().into_bytes()), &[])
        .await;
    assert_eq!(status, 201);
    // Same key, same body with keys in another order: the stored answer, nothing new written.
    let reordered =
        br#"{"summary":"locked out","incident_type":"LOCKOUT","site_id":"site-1","account_id":"acct-1"}"#.to_vec();
    let (status, headers, again) =
        s.send_raw("POST", "/v1/tickets", &crew.dispatcher, Some("create-1"), Some(reordered), &[]).await;
    assert_eq!((status, &again), (201, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    let (_, list) = s.send("GET", "/v1/tickets", &crew.dispatcher, None, None).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "the replay created no second ticket");

    let mut other = body.clone();
    other["summary"] = json!("different");
    let (status, err) = s.send("POST", "/v1/tickets", &crew.dispatcher, Some("create-1"), Some(other)).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("IDEMPOTENCY_KEY_REUSED")));

    let id = first["id"].as_str().unwrap();
    let triage = json!({ "workflow_outcome": "TRIAGED" });
    let (status, err) =
        s.send("POST", &format!("/v1/tickets/{id}/triage"), &crew.dispatcher, None, Some(triage.clone())).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("MISSING_IDEMPOTENCY_KEY")));
    for _ in 0..3 {
        let (status, t) = s
            .send("POST", &format!("/v1/tickets/{id}/triage"), &crew.dispatcher, Some("triage-1"), Some(triage.clone()))
            .await;
        assert_eq!((status, t["version"].as_u64()), (200, Some(2)), "{t}");
    }
    assert_eq!(s.timeline_len(id).await, 2, "three triage requests, one event");

    let (_, metrics, _) = s.send_raw("GET", "/metrics", "", None, None, &[]).await;
    let _ = metrics;
    let text = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(value("dispatch_idempotency_replays_total"), 3.0);
    assert_eq!(value("dispatch_idempotency_conflicts_total"), 1.0);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_never_a_500() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let id = support::new_ticket(&s, &crew.dispatcher).await;
    let triage = format!("/v1/tickets/{id}/triage");
    type Case<'a> = (&'a str, String, Option<Vec<u8>>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", triage.clone(), Some(b"{\"workflow_outcome\": ".to_vec()), 400, "VALIDATION_ERROR"),
        ("not an object", triage.clone(), Some(b"[1,2]".to_vec()), 400, "VALIDATION_ERROR"),
        ("wrong type", triage.clone(), Some(br#"{"workflow_outcome": 7}"#.to_vec()), 422, "VALIDATION_ERROR"),
        ("unknown outcome", triage.clone(), Some(br#"{"workflow_outcome": "DONE"}"#.to_vec()), 422, "VALIDATION_ERROR"),
        ("missing field", "/v1/tickets".into(), Some(br#"{"account_id": "acct-1"}"#.to_vec()), 422, "VALIDATION_ERROR"),
        (
            "unknown incident type",
            "/v1/tickets".into(),
            Some(br#"{"account_id":"acct-1","site_id":"s","incident_type":"VOLCANO","summary":"x"}"#.to_vec()),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "not a uuid",
            "/v1/tickets/12345/triage".into(),
            Some(br#"{"workflow_outcome":"TRIAGED"}"#.to_vec()),
            400,
            "INVALID_TICKET_ID",
        ),
        (
            "unknown ticket",
            format!("/v1/tickets/{}/triage", uuid::Uuid::new_v4()),
            Some(br#"{"workflow_outcome":"TRIAGED"}"#.to_vec()),
            404,
            "TICKET_NOT_FOUND",
        ),
        ("oversized body", triage.clone(), Some(vec![b' '; 2 * 1024 * 1024]), 413, "PAYLOAD_TOO_LARGE"),
        ("unknown route", "/v1/nope".into(), None, 404, "NOT_FOUND"),
    ];
    for (name, path, body, status, code) in cases {
        let (got, _, err) = s.send_raw("POST", &path, &crew.dispatcher, Some(&key()), body, &[]).await;
        assert_eq!((got, err["error"]["code"].as_str()), (status, Some(code)), "{name}: {err}");
        assert!(err["error"]["request_id"].as_str().is_some(), "{name}: errors carry the request id");
    }
    let (status, err) = s.send("GET", "/v1/tickets?state=SIDEWAYS", &crew.dispatcher, None, None).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")));
    let (status, err) = s.send("DELETE", "/v1/tickets", &crew.dispatcher, None, None).await;
    assert_eq!((status, err["error"]["code"].as_str()), (405, Some("METHOD_NOT_ALLOWED")));
    assert_eq!(s.timeline_len(&id).await, 1);
}

#[tokio::test]
async fn policy_fails_closed_for_reads_and_writes() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let id = support::dispatched_ticket(&s, &crew).await;
    let other_account = s.token("disp-9", "dispatcher", &["acct-9"], &["*"]).await;
    let other_tech = s.token("tech-2", "technician", &["acct-1"], &["*"]).await;
    let check_in = format!("/v1/tickets/{id}/tech/check-in");
    let get = format!("/v1/tickets/{id}");
    let cancel = format!("/v1/tickets/{id}/cancel");
    let timeline = format!("/v1/tickets/{id}/timeline");

    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no token", "POST", &check_in, "", vec![], 401, "UNAUTHORIZED"),
        ("garbage token", "POST", &check_in, "abc.def.ghi", vec![], 401, "UNAUTHORIZED"),
        (
            "dev headers without the flag",
            "POST",
            &check_in,
            "",
            vec![("x-actor-id", "tech-1"), ("x-actor-role", "technician")],
            401,
            "UNAUTHORIZED",
        ),
        ("role not allowed", "POST", &check_in, &crew.qa, vec![], 403, "FORBIDDEN"),
        ("not the assignee", "POST", &check_in, &other_tech, vec![], 403, "FORBIDDEN"),
        ("write out of scope", "POST", &cancel, &other_account, vec![], 403, "SCOPE_FORBIDDEN"),
        ("read out of scope", "GET", &get, &other_account, vec![], 403, "SCOPE_FORBIDDEN"),
        ("timeline out of scope", "GET", &timeline, &other_account, vec![], 403, "SCOPE_FORBIDDEN"),
        (
            "tool header mismatch",
            "POST",
            &check_in,
            &crew.technician,
            vec![("x-tool-name", "tech.complete")],
            403,
            "TOOL_NOT_ALLOWED",
        ),
        ("non-admin mints a token", "POST", "/v1/admin/tokens", &crew.dispatcher, vec![], 403, "FORBIDDEN"),
    ];
    for (name, method, path, token, headers, status, code) in cases {
        let body = (method == "POST").then(|| {
            br#"{"reason":"x","sub":"x","role":"admin","accounts":["*"],"sites":["*"],"ttl_seconds":60}"#.to_vec()
        });
        let (got, _, err) = s.send_raw(method, path, token, Some(&key()), body, &headers).await;
        assert_eq!((got, err["error"]["code"].as_str()), (status, Some(code)), "{name}: {err}");
    }
    // Out-of-scope tickets are left out of lists rather than refused.
    let (_, list) = s.send("GET", "/v1/tickets", &other_account, None, None).await;
    assert_eq!(list["tickets"], json!([]));
    // The right caller with the right tool header succeeds; nothing above was written.
    assert_eq!(s.timeline_len(&id).await, 5);
    let (status, _, body) = s
        .send_raw(
            "POST",
            &check_in,
            &crew.technician,
            Some(&key()),
            Some(b"{}".to_vec()),
            &[("x-tool-name", "tech.check_in")],
        )
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("IN_PROGRESS")), "{body}");
}

#[tokio::test]
async fn dev_headers_work_only_with_the_flag() {
    let dir = support::tempdir();
    let s = Server::start_with(dir.path(), &["--dev-headers"]);
    let headers = [("x-actor-id", "disp-1"), ("x-actor-role", "dispatcher"), ("x-actor-accounts", "acct-1")];
    let body = br#"{"account_id":"acct-1","site_id":"s","incident_type":"LOCKOUT","summary":"x"}"#.to_vec();
    let (status, _, t) = s.send_raw("POST", "/v1/tickets", "", Some(&key()), Some(body), &headers).await;
    assert_eq!((status, t["state"].as_str()), (201, Some("NEW")), "{t}");
    let (status, _, _) =
        s.send_raw("GET", "/v1/tickets", "", None, None, &[("x-actor-id", "x"), ("x-actor-role", "pirate")]).await;
    assert_eq!(status, 401, "an unknown role is refused even in dev mode");
}

#[tokio::test]
async fn unresolvable_evidence_blocks_completion() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let id = support::dispatched_ticket(&s, &crew).await;
    let post = |path: &str, body: Value| {
        let path = format!("/v1/tickets/{id}/{path}");
        let token = crew.technician.clone();
        let s = &s;
        async move { s.send("POST", &path, &token, Some(&key()), Some(body)).await }
    };
    post("tech/check-in", json!({})).await;
    let real = s.blob(&crew.technician, b"photo").await;
    let missing = format!("blob:sha256:{}", "0".repeat(64));
    post("evidence", json!({ "kind": "photo", "uri": real, "evidence_key": "photo_before" })).await;
    post("evidence", json!({ "kind": "photo", "uri": missing, "evidence_key": "photo_after" })).await;
    let (status, err) = post("tech/complete", json!({ "checklist": { "latch_tested": true, "strike_aligned": true }, "no_signature_reason": "tenant absent" })).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("INVALID_EVIDENCE_REFERENCE")), "{err}");
    assert_eq!(err["error"]["details"]["invalid_uris"], json!([missing]));
}
