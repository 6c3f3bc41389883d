//! The nodes and join-tokens API on `dispatch up`: the local worker is a real node
//! (joined over QUIC), admin-only changes, clear refusals for bad input.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use serde_json::json;
use support::Server;

#[tokio::test]
async fn up_runs_a_joined_local_worker_and_the_api_refuses_bad_input_clearly() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let admin = s.admin_token.clone();

    // The local worker joined with a one-use token like any other host.
    let node = wait_for_node(&s).await;
    assert_eq!(node["id"], "node-1");
    let (_, tokens) = s.send("GET", "/v1/join-tokens", &admin, None, None).await;
    let tokens = tokens["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 1);
    assert_eq!((tokens[0]["uses"].clone(), tokens[0]["nodes"][0].clone()), (json!(1), json!("node-1")));
    assert!(tokens[0].get("token").is_none(), "the token string is never listed");

    // Only admins change nodes or create tokens; operators and engineers may read.
    let dispatcher = s.token("d", "dispatcher", &["*"], &["*"]).await;
    let engineer = s.token("e", "engineer", &["*"], &["*"]).await;
    for (method, path, token, want) in [
        ("GET", "/v1/nodes", &dispatcher, 403),
        ("GET", "/v1/nodes", &engineer, 200),
        ("GET", "/v1/nodes/node-1", &engineer, 200),
        ("POST", "/v1/nodes/node-1/drain", &engineer, 403),
        ("POST", "/v1/join-tokens", &engineer, 403),
        ("GET", "/v1/join-tokens", &engineer, 403),
        ("GET", "/v1/nodes", &String::new(), 401),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let (status, answer) = s.send(method, path, token, None, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
    }

    for (method, path, body, status, code, says) in [
        (
            "PUT",
            "/v1/nodes/node-1/config",
            json!({ "heartbeat_interval_ms": 5 }),
            422,
            "VALIDATION_ERROR",
            "heartbeat_interval_ms",
        ),
        (
            "PUT",
            "/v1/nodes/node-1/config",
            json!({ "allowed_network_policies": ["host"] }),
            422,
            "VALIDATION_ERROR",
            "network policy",
        ),
        ("PUT", "/v1/nodes/node-1/config", json!({ "heartbeat": 5 }), 422, "VALIDATION_ERROR", "heartbeat"),
        ("PUT", "/v1/nodes/node-9/config", json!({ "max_concurrent_jobs": 1 }), 404, "NOT_FOUND", "node"),
        ("POST", "/v1/nodes/node-9/drain", json!({}), 404, "NOT_FOUND", "node"),
        ("POST", "/v1/join-tokens", json!({ "uses": 0 }), 422, "VALIDATION_ERROR", "uses"),
        ("POST", "/v1/join-tokens", json!({ "ttl_seconds": 0 }), 422, "VALIDATION_ERROR", "ttl_seconds"),
        ("POST", "/v1/join-tokens/nope/revoke", json!({}), 404, "NOT_FOUND", "join token"),
    ] {
        let (got, answer) = s.send(method, path, &admin, None, Some(body)).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {path}: message {message:?} should mention {says}");
    }

    // A real change bumps the version and the local worker acknowledges it.
    let (status, changed) =
        s.send("PUT", "/v1/nodes/node-1/config", &admin, None, Some(json!({ "max_concurrent_jobs": 3 }))).await;
    assert_eq!((status, changed["config_version"].clone()), (200, json!(2)), "{changed}");
    wait_until(&s, |n| n["config_ack"]["version"] == 2).await;

    let metrics = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    for series in [
        "dispatch_nodes{state=\"ACTIVE\"} 1",
        "dispatch_node_joins_total{outcome=\"joined\"} 1",
        "dispatch_node_events_total{kind=\"node.config_acknowledged\"} 2",
        "dispatch_cluster_connections 1",
        "dispatch_worker_connected 1",
    ] {
        assert!(metrics.contains(series), "missing {series} in:\n{metrics}");
    }

    // `up`'s own worker is removed only when asked with force; removing is final: later
    // changes are refused with their own code.
    let (status, answer) = s.send("POST", "/v1/nodes/node-1/remove", &admin, None, None).await;
    assert_eq!((status, answer["error"]["code"].clone()), (409, json!("LOCAL_NODE")), "{answer}");
    let (status, _) = s.send("POST", "/v1/nodes/node-1/remove?force=true", &admin, None, None).await;
    assert_eq!(status, 200);
    let (status, answer) = s.send("POST", "/v1/nodes/node-1/drain", &admin, None, Some(json!({}))).await;
    assert_eq!((status, answer["error"]["code"].clone()), (409, json!("NODE_REMOVED")), "{answer}");
    s.stop();
}

async fn wait_for_node(s: &Server) -> serde_json::Value {
    wait_until(s, |n| n["state"] == "ACTIVE" && n["config_ack"]["version"] == 1).await
}

/// Polls node-1 until `check` holds (bounded): the worker acts on its own schedule.
async fn wait_until(s: &Server, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..400 {
        let (_, node) = s.send("GET", "/v1/nodes/node-1", &s.admin_token, None, None).await;
        if check(&node) {
            return node;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (_, node) = s.send("GET", "/v1/nodes/node-1", &s.admin_token, None, None).await;
    panic!("node-1 never reached the expected state: {node}");
}

#[tokio::test]
async fn with_inference_required_ready_waits_for_a_runtime_or_a_provider() {
    let dir = support::tempdir();
    let ready = |s: &Server| {
        let url = format!("{}/ready", s.url);
        async move {
            let r = support::get(url).await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let s = Server::start_with(dir.path(), &["--inference-required"]);
    wait_for_node(&s).await;
    let (status, body) = ready(&s).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reasons"][0].as_str().unwrap().contains("no active node reports a local inference runtime"),
        "{body}"
    );
    s.stop();

    // The same node, now saying it has a local runtime.
    let s = Server::start_with(dir.path(), &["--inference-required", "--local-inference"]);
    wait_until(&s, |n| n["state"] == "ACTIVE" && n["capabilities"]["inference"] == true).await;
    assert_eq!(ready(&s).await.0, 200);
    s.stop();

    // No local runtime, but an external provider.
    let s =
        Server::start_with(dir.path(), &["--inference-required", "--inference-provider", "https://inference.example"]);
    assert_eq!(ready(&s).await.0, 200);
    s.stop();
}
