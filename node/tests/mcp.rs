//! Agents over MCP, against the real binary, through an independent client: the
//! official Rust SDK's (rmcp) — over Streamable HTTP at `/mcp`, and over stdio through
//! `dispatch mcp`. Tool calls must run on the same route, policy, idempotency and
//! audit path as the HTTP API; hostile input must be refused with nothing written.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, NumberOrString, ProgressNotificationParam, ProgressToken,
    ReadResourceRequestParams, RequestMetaObject, ResourceContents,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use support::{Server, key};

/// The agent's side: counts the progress notifications it is sent.
#[derive(Clone, Default)]
struct Agent {
    progress: Arc<tokio::sync::Notify>,
}

impl ClientHandler for Agent {
    async fn on_progress(&self, _: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.notify_one();
    }
}

type Session = RunningService<RoleClient, Agent>;

async fn connect(s: &Server, token: &str, agent: Agent) -> Session {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.url));
    config.auth_header = Some(token.to_owned());
    let transport = StreamableHttpClientTransport::with_client(support::client_builder().build().unwrap(), config);
    agent.serve(transport).await.unwrap()
}

/// `dispatch mcp --server … --token …` as a child process, spoken to over its stdio.
async fn connect_stdio(s: &Server, token: &str, agent: Agent) -> Session {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dispatch"));
    command.args(["mcp", "--server", &s.url, "--token", token]);
    agent.serve(TokioChildProcess::new(command).unwrap()).await.unwrap()
}

async fn call_with(
    c: &rmcp::Peer<RoleClient>,
    tool: &str,
    args: Value,
    meta: Option<RequestMetaObject>,
) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args.as_object().unwrap().clone());
    params.meta = meta;
    c.call_tool(params).await.unwrap()
}

async fn call(c: &Session, tool: &str, args: Value) -> CallToolResult {
    call_with(c, tool, args, None).await
}

/// The structured answer of a call that must have succeeded.
fn ok(r: &CallToolResult) -> Value {
    assert_eq!(r.is_error, Some(false), "{r:?}");
    r.structured_content.clone().unwrap()
}

/// `(status, code, policy)` of a call that must have been refused.
fn refused(r: &CallToolResult) -> (u64, String, Option<String>) {
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let s = r.structured_content.clone().unwrap();
    let policy = s["error"]["policy"].as_str().map(str::to_owned);
    (s["status"].as_u64().unwrap(), s["error"]["code"].as_str().unwrap().to_owned(), policy)
}

fn replayed(r: &CallToolResult) -> bool {
    r.meta.as_ref().unwrap()["replayed"] == true
}

async fn mint(s: &Server, body: Value) -> String {
    let (status, minted) = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await;
    assert_eq!(status, 201, "{minted}");
    minted["token"].as_str().unwrap().to_owned()
}

const NARROW_TOOLS: [&str; 4] = ["ticket.create", "ticket.triage", "ticket.get", "ticket.timeline"];

fn new_ticket(account: &str) -> Value {
    json!({ "body": { "account_id": account, "site_id": "site-1", "incident_type": "DOOR_WONT_LATCH", "summary": "front door will not latch" } })
}

#[tokio::test]
async fn a_narrow_service_account_sees_exactly_its_tools_and_its_calls_are_audited_like_http() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let bot = mint(
        &s,
        json!({ "sub": "intake-bot", "role": "agent", "accounts": ["acct-1"], "sites": ["*"],
        "tools": NARROW_TOOLS, "ttl_seconds": 600 }),
    )
    .await;
    let c = connect(&s, &bot, Agent::default()).await;

    let tools = c.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, NARROW_TOOLS, "exactly the token's tools, in the catalogue's order");
    // The input schemas come from the same place as GET /v1/tools.
    let (_, catalogue) = s.send("GET", "/v1/tools", &s.admin_token, None, None).await;
    let http_create = catalogue["tools"].as_array().unwrap().iter().find(|t| t["name"] == "ticket.create").unwrap();
    let create = tools.iter().find(|t| t.name == "ticket.create").unwrap();
    assert_eq!(create.input_schema["properties"]["body"], http_create["body_schema"]);

    // Create, with a correlation id in _meta; the retry replays the first answer.
    let mut meta = RequestMetaObject::default();
    meta.0.insert("correlation_id".into(), json!("conversation-42"));
    let first = call_with(&c, "ticket.create", new_ticket("acct-1"), Some(meta.clone())).await;
    let ticket = ok(&first);
    let again = call_with(&c, "ticket.create", new_ticket("acct-1"), Some(meta)).await;
    assert_eq!(ok(&again)["id"], ticket["id"], "a retried call answers with the first ticket");
    assert!(!replayed(&first) && replayed(&again));
    let id = ticket["id"].as_str().unwrap();

    let triaged =
        call(&c, "ticket.triage", json!({ "id": id, "body": { "workflow_outcome": "READY_TO_SCHEDULE" } })).await;
    assert_eq!(ok(&triaged)["state"], "READY_TO_SCHEDULE");
    // Wrong state, outside the token's catalogue, not in the catalogue at all, bad arguments.
    // The same arguments again are a retry (replayed); a new key makes it a new command.
    let retry =
        call(&c, "ticket.triage", json!({ "id": id, "body": { "workflow_outcome": "READY_TO_SCHEDULE" } })).await;
    assert!(replayed(&retry) && ok(&retry)["version"] == ok(&triaged)["version"]);
    let wrong_state = call(
        &c,
        "ticket.triage",
        json!({ "id": id, "body": { "workflow_outcome": "READY_TO_SCHEDULE" }, "idempotency_key": "triage-twice" }),
    )
    .await;
    assert_eq!(refused(&wrong_state), (409, "INVALID_STATE_TRANSITION".into(), Some("state".into())));
    let outside = call(&c, "schedule.propose", json!({ "id": id, "body": { "windows": [] } })).await;
    assert_eq!(refused(&outside), (403, "TOOL_NOT_ALLOWED".into(), Some("tool".into())));
    let unknown = call(&c, "shell.exec", json!({ "command": "rm -rf /" })).await;
    assert_eq!(refused(&unknown), (403, "TOOL_NOT_ALLOWED".into(), Some("tool".into())));
    let stray = call(&c, "ticket.get", json!({ "id": id, "force": true })).await;
    assert_eq!(refused(&stray).1, "VALIDATION_ERROR");

    // The timeline: two events, each naming the tool, the MCP request and the correlation.
    let (_, timeline) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &s.admin_token, None, None).await;
    let events = timeline["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "the retry wrote nothing: {timeline}");
    assert_eq!(events[0]["tool"], "ticket.create");
    assert_eq!(events[0]["correlation_id"], "conversation-42");
    assert!(events[0]["request_id"].as_str().unwrap().starts_with("mcp-"), "{}", events[0]);
    assert_eq!(events[1]["tool"], "ticket.triage");
    assert!(events[1]["correlation_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(events[0]["actor"]["id"], "intake-bot");

    // Resources: the ticket in scope reads; one in another account is refused.
    let read = c.read_resource(ReadResourceRequestParams::new(format!("dispatch://tickets/{id}"))).await.unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else { panic!("{read:?}") };
    assert_eq!(serde_json::from_str::<Value>(text).unwrap()["state"], "READY_TO_SCHEDULE");
    let (_, other) =
        s.send("POST", "/v1/tickets", &s.admin_token, Some(&key()), Some(new_ticket("acct-2")["body"].clone())).await;
    let elsewhere = format!("dispatch://tickets/{}", other["id"].as_str().unwrap());
    let refusal = c.read_resource(ReadResourceRequestParams::new(elsewhere)).await.unwrap_err();
    assert!(refusal.to_string().contains("FORBIDDEN_SCOPE") || refusal.to_string().contains("(403)"), "{refusal}");
    c.cancel().await.unwrap();
    s.stop();
}

/// Lane, checkpoint, handoff over MCP; an operator decides over HTTP while the agent waits.
async fn handoff_round_trip(s: &Server, c: &Session, agent: &Agent, lane: &str) {
    let opened = call(c, "lane.open", json!({ "body": { "lane_id": lane } })).await;
    assert_eq!(ok(&opened)["lane"]["id"], lane);
    ok(&call(c, "lane.checkpoint", json!({ "id": lane, "body": { "name": "drafted", "state": { "step": 3 } } })).await);
    let requested = call(c, "handoff.request", json!({ "id": lane, "body": {
        "checkpoint": "drafted", "trigger_class": "refund_over_limit", "reason": "refund of 900 EUR", "queue": "billing" } }))
    .await;
    ok(&requested);
    // Nothing decided yet: the bounded wait answers pending, with the handoff to wait on.
    let pending = ok(&call(c, "handoff.await_decision", json!({ "id": lane, "wait": 0 })).await);
    assert_eq!(pending["pending"], true, "{pending}");
    let handoff = pending["handoff_id"].as_str().unwrap().to_owned();

    // The agent waits (asking for progress); the operator decides once it is waiting.
    let waiting = {
        let c = c.peer().clone();
        let lane = lane.to_owned();
        let mut meta = RequestMetaObject::default();
        meta.set_progress_token(ProgressToken(NumberOrString::Number(7)));
        tokio::spawn(async move {
            call_with(&c, "handoff.await_decision", json!({ "id": lane, "wait": 25 }), Some(meta)).await
        })
    };
    agent.progress.notified().await;
    let operator = mint(s, json!({ "sub": "olga", "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": ["billing"], "ttl_seconds": 600 })).await;
    let (status, decided) = s
        .send(
            "POST",
            &format!("/v1/handoffs/{handoff}/decision"),
            &operator,
            Some(&key()),
            Some(json!({ "action": "approve", "reason": "within policy" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let answer = ok(&waiting.await.unwrap());
    assert_eq!((answer["decided"].clone(), answer["pending"].clone()), (json!(true), json!(false)), "{answer}");
    assert_eq!(answer["handoff_id"], handoff.as_str());
    assert_eq!(answer["decision"]["action"], "approve", "{answer}");
}

#[tokio::test]
async fn a_handoff_requested_over_mcp_is_decided_over_http_while_the_agent_waits() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let token = mint(
        &s,
        json!({ "sub": "refund-agent", "role": "agent", "accounts": ["*"], "sites": ["*"], "ttl_seconds": 600 }),
    )
    .await;
    let agent = Agent::default();
    let c = connect(&s, &token, agent.clone()).await;
    handoff_round_trip(&s, &c, &agent, "refund-1").await;
    let read = c.read_resource(ReadResourceRequestParams::new("dispatch://lanes/refund-1/handoff")).await.unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else { panic!("{read:?}") };
    assert_eq!(serde_json::from_str::<Value>(text).unwrap()["decided"], true);
    c.cancel().await.unwrap();
    s.stop();
}

#[tokio::test]
async fn the_stdio_bridge_carries_the_same_calls() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let token = mint(
        &s,
        json!({ "sub": "desktop-agent", "role": "agent", "accounts": ["acct-1"], "sites": ["*"], "ttl_seconds": 600 }),
    )
    .await;
    let agent = Agent::default();
    let c = connect_stdio(&s, &token, agent.clone()).await;
    let names: Vec<String> = c.list_all_tools().await.unwrap().into_iter().map(|t| t.name.into_owned()).collect();
    assert!(
        names.iter().any(|n| n == "handoff.await_decision") && !names.iter().any(|n| n == "node.drain"),
        "{names:?}"
    );
    let first = call(&c, "ticket.create", new_ticket("acct-1")).await;
    let again = call(&c, "ticket.create", new_ticket("acct-1")).await;
    assert_eq!(ok(&first)["id"], ok(&again)["id"]);
    assert!(replayed(&again));
    handoff_round_trip(&s, &c, &agent, "desk-1").await;
    c.cancel().await.unwrap();
    s.stop();
}

/// Posts raw bytes to /mcp; returns status, `WWW-Authenticate` and the JSON answer.
async fn post_raw(s: &Server, token: Option<&str>, body: Vec<u8>) -> (u16, Option<String>, Value) {
    let mut req = support::client_builder()
        .build()
        .unwrap()
        .post(format!("{}/mcp", s.url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    (status, challenge, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn hostile_messages_are_refused_clearly_and_write_nothing() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let admin = s.admin_token.clone();
    let create = |summary: String| {
        let mut args = new_ticket("acct-1");
        args["body"]["summary"] = json!(summary);
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "ticket.create", "arguments": args } })
    };
    let valid = create("a door".into()).to_string().into_bytes();

    let (status, challenge, body) = post_raw(&s, None, valid.clone()).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")), "{body}");
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    let (status, challenge, _) = post_raw(&s, Some("not-a-token"), valid.clone()).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")));

    let truncated = valid[..valid.len() / 2].to_vec();
    let (status, _, body) = post_raw(&s, Some(&admin), truncated).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!(-32700)), "{body}");
    let oversized = create("x".repeat(2 * 1024 * 1024)).to_string().into_bytes();
    let (status, _, body) = post_raw(&s, Some(&admin), oversized).await;
    assert_eq!(status, 413, "{body}");
    let unknown = json!({ "jsonrpc": "2.0", "id": 2, "method": "tickets/delete_all", "params": {} });
    let (status, _, body) = post_raw(&s, Some(&admin), unknown.to_string().into_bytes()).await;
    assert_eq!((status, body["error"]["code"].clone()), (200, json!(-32601)), "{body}");
    let not_jsonrpc = json!({ "hello": "world" });
    let (status, _, body) = post_raw(&s, Some(&admin), not_jsonrpc.to_string().into_bytes()).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!(-32600)), "{body}");

    let (_, tickets) = s.send("GET", "/v1/tickets", &admin, None, None).await;
    assert_eq!(tickets["tickets"], json!([]), "no refused message wrote a ticket: {tickets}");
    // The same message, well formed and authorized, does write: the refusals above were real.
    let (status, _, body) = post_raw(&s, Some(&admin), valid).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["isError"], false, "{body}");
    s.stop();
}
