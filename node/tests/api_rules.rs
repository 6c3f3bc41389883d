//! The contract's rules a client notices, against the real binary: the order of checks
//! (who, may they, is the input right), JSON refusals for query strings and paths,
//! whole-number floats read as integers, and the guards that keep an install usable.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use serde_json::json;
use support::{Server, key};

#[tokio::test]
async fn a_caller_without_the_role_learns_nothing_about_the_input() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let technician = s.token("tess", "technician", &["*"], &["*"]).await;
    // A body that breaks every rule, to a route the technician may not use: 403 first.
    let bad = json!({ "sub": "", "role": "nobody", "ttl_seconds": -1 });
    let (status, body) = s.send("POST", "/v1/admin/tokens", &technician, None, Some(bad.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "{body}");
    // A ticket id that is not one, on a command the technician may not use.
    let (status, body) = s.send("POST", "/v1/tickets/not-a-uuid/triage", &technician, None, Some(json!({}))).await;
    assert_eq!(status, 403, "{body}");
    // A malformed key is the input too.
    let (status, _, body) =
        s.send_raw("POST", "/v1/tickets", &technician, None, Some(b"{".to_vec()), &[("idempotency-key", "a b")]).await;
    assert_eq!(status, 403, "{body}");
    // Nobody at all: 401 before anything else.
    let (status, body) = s.send("POST", "/v1/admin/tokens", "", None, Some(bad)).await;
    assert_eq!(status, 401, "{body}");
    // With the role, the same body is refused for what it is.
    let (status, body) =
        s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(json!({ "sub": "", "role": "qa" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("VALIDATION_ERROR")), "{body}");
}

#[tokio::test]
async fn query_and_path_refusals_are_json_with_the_rule() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    for path in [
        "/v1/tasks?limit=-1",
        "/v1/tasks?limit=99999999999999999999",
        "/v1/tasks?limit=0",
        "/v1/tasks?limit=1001",
        "/v1/tasks?state=SLEEPING",
        "/v1/tickets?state=",
        "/v1/tickets?after=yesterday",
        "/v1/handoffs?status=MAYBE",
        "/v1/users?limit=abc",
        "/v1/lanes/l1/decision?wait=abc",
        "/v1/lanes/l1/decision?wait=61",
    ] {
        let (status, headers, body) = s.send_raw("GET", path, &s.admin_token, None, None, &[]).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{path}: {body}");
    }
    let (status, body) = s.send("GET", "/v1/tasks?limit=1000", &s.admin_token, None, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        s.send("POST", "/v1/admin/signing-keys/k1/retire?force=perhaps", &s.admin_token, None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{body}");
}

#[tokio::test]
async fn whole_number_floats_are_integers() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let (status, body) = s
        .send("POST", "/v1/join-tokens", &s.admin_token, None, Some(json!({ "ttl_seconds": 60.0, "uses": 2.0 })))
        .await;
    assert_eq!((status, body["uses_allowed"].as_u64()), (201, Some(2)), "{body}");
    let (status, body) =
        s.send("POST", "/v1/join-tokens", &s.admin_token, None, Some(json!({ "ttl_seconds": 60.5 }))).await;
    assert_eq!(status, 422, "a fraction is not an integer: {body}");
    let change = json!({ "heartbeat_interval_ms": 2000.0 });
    let (status, body) = s.send("PUT", "/v1/nodes/node-1/config", &s.admin_token, None, Some(change)).await;
    assert_eq!((status, body["config"]["heartbeat_interval_ms"].as_u64()), (200, Some(2000)), "{body}");
}

#[tokio::test]
async fn the_last_admin_cannot_be_disabled_or_demoted() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    for (path, body) in [("/v1/users/admin/disable", None), ("/v1/users/admin/role", Some(json!({ "role": "qa" })))] {
        let (status, refused) = s.send("POST", path, &s.admin_token, None, body).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("LAST_ADMIN")), "{path}: {refused}");
    }
    let (status, me) = s.send("GET", "/v1/me", &s.admin_token, None, None).await;
    assert_eq!(status, 200, "the admin's token still works: {me}");

    // With a second admin, the first may go; then the second is the last.
    let ada = json!({ "username": "ada", "role": "admin", "password": "correct horse battery" });
    let (status, body) = s.send("POST", "/v1/users", &s.admin_token, None, Some(ada)).await;
    assert_eq!(status, 201, "{body}");
    let login = json!({ "username": "ada", "password": "correct horse battery" });
    let (status, tokens) = s.send("POST", "/v1/auth/login", "", None, Some(login)).await;
    assert_eq!(status, 200, "{tokens}");
    let ada = tokens["access_token"].as_str().unwrap();
    let (status, body) = s.send("POST", "/v1/users/admin/disable", ada, None, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.send("POST", "/v1/users/ada/disable", ada, None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("LAST_ADMIN")), "{body}");
}

#[tokio::test]
async fn removing_ups_own_worker_asks_for_force() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let (status, body) = s.send("POST", "/v1/nodes/node-1/remove", &s.admin_token, None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("LOCAL_NODE")), "{body}");
    let (status, body) = s.send("GET", "/v1/nodes/node-1", &s.admin_token, None, None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("ACTIVE")), "{body}");
    let (status, body) = s.send("POST", "/v1/nodes/node-1/remove?force=true", &s.admin_token, None, None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("REMOVED")), "{body}");
}

#[tokio::test]
async fn keyed_routes_say_so_and_check_the_key() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let (status, body) = s.send("POST", "/v1/lanes", &s.admin_token, None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("MISSING_IDEMPOTENCY_KEY")), "{body}");
    let long = "k".repeat(129);
    for bad in ["a b", long.as_str()] {
        let (status, _, body) =
            s.send_raw("POST", "/v1/lanes", &s.admin_token, None, None, &[("idempotency-key", bad)]).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{bad}: {body}");
    }
    // A body whose fields are all optional may be left out, as the document says.
    let (status, body) = s.send("POST", "/v1/lanes", &s.admin_token, Some(&key()), None).await;
    assert_eq!(status, 201, "{body}");
    let (_, doc) = s.send("GET", "/v1/openapi.json", "", None, None).await;
    let lane_create = &doc["paths"]["/v1/lanes"]["post"];
    assert_eq!(lane_create["requestBody"]["required"], false);
    let header = lane_create["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "Idempotency-Key").unwrap();
    assert_eq!(header["required"], true);
    // Minting a token keeps nothing to replay: no key asked.
    let mint = &doc["paths"]["/v1/admin/tokens"]["post"];
    assert!(mint["parameters"].as_array().is_none_or(|p| p.iter().all(|p| p["name"] != "Idempotency-Key")));
}

/// A body missing several required fields is refused naming all of them at once.
#[tokio::test]
async fn every_missing_field_is_named_at_once() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let (status, body) = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(serde_json::json!({}))).await;
    assert_eq!(status, 422, "{body}");
    let missing = body["error"]["details"]["missing_fields"].as_array().unwrap();
    for field in ["sub", "role"] {
        assert!(missing.iter().any(|m| m == field), "{field} not named: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(field), "{body}");
    }
    let (status, body) = s
        .send("POST", "/v1/tickets", &s.admin_token, Some(&support::key()), Some(serde_json::json!({ "summary": "x" })))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["missing_fields"],
        serde_json::json!(["account_id", "site_id", "incident_type"])
    );
}
