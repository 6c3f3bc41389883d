//! The tool catalogue as MCP tools, and a tool call as the route call it stands for.
//! Names, roles and input schemas come from the policy table and the OpenAPI document,
//! the same sources as `GET /v1/tools`.

use std::sync::Arc;

use actors::policy::{self, Principal, ToolSpec};
use axum::Router;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, MetaObject, ProgressNotificationParam, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};

use super::forward::{self, Answer, Call, Origin};
use crate::api::openapi::Operation;

/// Tools MCP does not offer: `blob.upload` takes raw bytes, not JSON arguments;
/// `events.stream` never ends (an MCP tool call answers once).
const NOT_OVER_MCP: &[&str] = &["blob.upload", "events.stream"];
/// The argument naming a mutation's idempotency key.
const KEY_ARGUMENT: &str = "idempotency_key";
/// The argument holding a route's JSON body.
const BODY_ARGUMENT: &str = "body";
/// The longest `handoff.await_decision` wait over MCP: well inside the 60 s that common
/// MCP clients allow a request, so the answer is `pending`, never a client timeout.
pub const MAX_AWAIT_SECONDS: u64 = 25;
/// How long each slice of that wait is; a progress notification follows each slice.
const AWAIT_SLICE_SECONDS: u64 = 5;
const AWAIT_TOOL: &str = "handoff.await_decision";

/// The MCP tools `caller` may use, in the policy table's order.
pub(super) fn catalogue(caller: &Principal) -> Vec<Tool> {
    policy::TOOLS
        .iter()
        .filter(|spec| !NOT_OVER_MCP.contains(&spec.name) && policy::authorize(caller, spec, None).is_ok())
        .filter_map(|spec| Some(tool(spec, crate::api::openapi::operation(spec.name)?)))
        .collect()
}

fn tool(spec: &ToolSpec, op: &Operation) -> Tool {
    let hints =
        ToolAnnotations::new().read_only(!spec.mutating).idempotent(!spec.mutating || spec.keyed).open_world(false);
    let mut description = format!("{} ({} {}).", spec.summary, op.method, op.template);
    if !spec.from_states.is_empty() {
        let states: Vec<String> = spec.from_states.iter().map(ToString::to_string).collect();
        description.push_str(&format!(" Allowed while the ticket is {}.", states.join(", ")));
    }
    Tool::new(spec.name, description, Arc::new(input_schema(spec, op))).annotate(hints)
}

/// The arguments of a tool: the route's path and query parameters by name, its JSON body
/// as `body`, and for keyed tools an optional `idempotency_key`.
fn input_schema(spec: &ToolSpec, op: &Operation) -> JsonObject {
    let mut properties = serde_json::Map::new();
    let mut required = vec![];
    for p in op.path_params.iter().chain(&op.query_params) {
        let mut schema = p.schema.clone();
        if spec.name == AWAIT_TOOL && p.name == "wait" {
            schema["maximum"] = json!(MAX_AWAIT_SECONDS);
            schema["description"] = json!(format!(
                "Seconds to wait for the decision (0..={MAX_AWAIT_SECONDS}, default {MAX_AWAIT_SECONDS}); \
                 the answer says pending while the handoff is still open"
            ));
        }
        properties.insert(p.name.clone(), schema);
        if p.required {
            required.push(p.name.clone());
        }
    }
    if let Some(body) = &op.body {
        properties.insert(BODY_ARGUMENT.into(), body.clone());
        if op.body_required {
            required.push(BODY_ARGUMENT.into());
        }
    }
    if spec.keyed {
        properties.insert(
            KEY_ARGUMENT.into(),
            json!({
                "type": "string",
                "pattern": crate::api::IDEMPOTENCY_KEY_PATTERN,
                "description": "Optional. A retry with the same key (or, without one, the same arguments) \
                                replays the first answer instead of running again; pass a new key to do the \
                                same thing twice on purpose.",
            }),
        );
    }
    let schema =
        json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false });
    schema.as_object().cloned().unwrap_or_default()
}

/// Runs tool `name` with `args` on the API router as `origin`'s caller.
pub(super) async fn call(
    api: &Router,
    origin: &Origin,
    name: &str,
    args: JsonObject,
    cx: &RequestContext<RoleServer>,
) -> CallToolResult {
    let found = policy::tool(name)
        .filter(|spec| !NOT_OVER_MCP.contains(&spec.name))
        .and_then(|spec| Some((spec, crate::api::openapi::operation(spec.name)?)));
    let Some((spec, op)) = found else {
        let message = format!("{name:?} is not in the tool catalogue (tools/list shows the tools you may use)");
        return result(forward::refusal(403, "TOOL_NOT_ALLOWED", &message), Some("tool"));
    };
    let call = match route_call(spec, op, args) {
        Ok(call) => call,
        Err(message) => return result(forward::refusal(400, "VALIDATION_ERROR", &message), None),
    };
    if spec.name == AWAIT_TOOL {
        return await_decision(api, origin, call, cx).await;
    }
    result(forward::send(api, origin, call).await, None)
}

/// The route call for `args`, refusing arguments the tool does not take.
fn route_call<'a>(spec: &'a ToolSpec, op: &Operation, mut args: JsonObject) -> Result<Call<'a>, String> {
    let mut uri = op.template.to_owned();
    for p in &op.path_params {
        let value = match args.remove(&p.name) {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(_) => return Err(format!("{} must be a non-empty string", p.name)),
            None => return Err(format!("{} is required", p.name)),
        };
        uri = uri.replace(&format!("{{{}}}", p.name), &crate::http::path_segment(&value));
    }
    let mut query = vec![];
    for p in &op.query_params {
        match args.remove(&p.name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => query.push(format!("{}={}", p.name, crate::http::path_segment(&s))),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => query.push(format!("{}={v}", p.name)),
            Some(_) => return Err(format!("{} must be a string, a number or a boolean", p.name)),
        }
    }
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    let body = if op.body.is_some() { args.remove(BODY_ARGUMENT) } else { None };
    let explicit_key = match if spec.keyed { args.remove(KEY_ARGUMENT) } else { None } {
        None => None,
        Some(Value::String(k)) if crate::api::is_idempotency_key(&k) => Some(k),
        Some(_) => return Err(crate::api::IDEMPOTENCY_KEY_RULE.replace("Idempotency-Key", KEY_ARGUMENT)),
    };
    if let Some(unknown) = args.keys().next() {
        return Err(format!("{} takes no argument {unknown:?}", spec.name));
    }
    let idempotency_key = spec.keyed.then(|| explicit_key.unwrap_or_else(|| derived_key(spec.name, &uri, &body)));
    Ok(Call { tool: spec.name, method: op.method, uri, body, idempotency_key })
}

/// The key of a call that names none: the same tool with the same arguments is the same
/// request, so a client retrying a call it never saw answered cannot run it twice.
fn derived_key(tool: &str, uri: &str, body: &Option<Value>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(tool.as_bytes());
    hasher.update(b"\n");
    hasher.update(uri.as_bytes());
    hasher.update(b"\n");
    hasher.update(crate::api::canonical_sha256(body.as_ref().unwrap_or(&Value::Null)));
    format!("mcp-{}", hex::encode(&hasher.finalize()[..16]))
}

/// `handoff.await_decision`: waits in slices, telling a client that asked for progress
/// after each one, and answers `pending: true` with the handoff id when the wait runs out.
async fn await_decision(
    api: &Router,
    origin: &Origin,
    call: Call<'_>,
    cx: &RequestContext<RoleServer>,
) -> CallToolResult {
    let (path, query) = call.uri.split_once('?').unwrap_or((&call.uri, ""));
    let requested = query.split('&').find_map(|kv| kv.strip_prefix("wait=")).map(str::parse::<u64>);
    let total = match requested {
        None => MAX_AWAIT_SECONDS,
        Some(Ok(wait)) if wait <= MAX_AWAIT_SECONDS => wait,
        Some(_) => {
            let message = format!("wait must be a whole number of seconds, 0..={MAX_AWAIT_SECONDS}");
            return result(forward::refusal(400, "VALIDATION_ERROR", &message), None);
        }
    };
    let progress = cx.meta.get_progress_token();
    let mut waited = 0;
    loop {
        let slice = AWAIT_SLICE_SECONDS.min(total - waited);
        let uri = format!("{path}?wait={slice}");
        let answer = forward::send(api, origin, Call { uri, body: None, idempotency_key: None, ..call }).await;
        waited += slice;
        if !(200..300).contains(&answer.status) || !is_open(&answer.body) || waited >= total || cx.ct.is_cancelled() {
            return pending_marked(answer);
        }
        if let Some(token) = &progress {
            let note = ProgressNotificationParam::new(token.clone(), waited as f64)
                .with_total(total as f64)
                .with_message(format!("no decision yet on handoff {}", answer.body["handoff_id"]));
            let _ = cx.peer.notify_progress(note).await;
        }
    }
}

/// Whether a decision answer is about a handoff still waiting for a person.
fn is_open(decision: &Value) -> bool {
    decision["handoff_status"] == json!(crate::dto::lanes::HandoffStatus::Open)
}

/// The decision answer with `pending` set: the handoff is still open, call again.
fn pending_marked(mut answer: Answer) -> CallToolResult {
    if (200..300).contains(&answer.status) && answer.body.is_object() {
        answer.body["pending"] = json!(is_open(&answer.body));
    }
    result(answer, None)
}

/// A route's answer as a tool result: the JSON body as structured content; a refusal
/// as a tool error with its stable code, status and policy dimension.
fn result(answer: Answer, policy: Option<&str>) -> CallToolResult {
    if (200..300).contains(&answer.status) {
        let body = if answer.body.is_object() { answer.body } else { json!({ "value": answer.body }) };
        let mut meta = MetaObject::new();
        meta.insert("status".into(), json!(answer.status));
        meta.insert("replayed".into(), json!(answer.replayed));
        return CallToolResult::structured(body).with_meta(Some(meta));
    }
    let mut error =
        answer.body.get("error").cloned().unwrap_or_else(|| json!({ "code": "INTERNAL", "message": answer.body }));
    if let Some(policy) = policy {
        error["policy"] = json!(policy);
    }
    let text = format!(
        "{} ({}{}): {}",
        error["code"].as_str().unwrap_or("ERROR"),
        answer.status,
        error["policy"].as_str().map(|p| format!(", policy: {p}")).unwrap_or_default(),
        error["message"].as_str().unwrap_or_default(),
    );
    let mut refused = CallToolResult::error(vec![ContentBlock::text(text)]);
    refused.structured_content = Some(json!({ "status": answer.status, "error": error }));
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(tool: &str, args: Value) -> Result<(String, Option<Value>, Option<String>), String> {
        let spec = policy::tool(tool).unwrap();
        let op = crate::api::openapi::operation(tool).unwrap();
        let call = route_call(spec, op, args.as_object().unwrap().clone())?;
        Ok((call.uri, call.body, call.idempotency_key))
    }

    #[test]
    fn arguments_become_the_route_call() {
        let (uri, body, key) = route("lane.get", json!({ "id": "a/b c" })).unwrap();
        assert_eq!((uri.as_str(), body, key), ("/v1/lanes/a%2Fb%20c", None, None), "a path segment is escaped");
        let (uri, ..) = route("handoff.await_decision", json!({ "id": "l1", "wait": 3 })).unwrap();
        assert_eq!(uri, "/v1/lanes/l1/decision?wait=3");
        let (uri, body, _) = route("lane.checkpoint", json!({ "id": "l1", "body": { "name": "c1" } })).unwrap();
        assert_eq!((uri.as_str(), body), ("/v1/lanes/l1/checkpoints", Some(json!({ "name": "c1" }))));
    }

    #[test]
    fn arguments_the_tool_does_not_take_are_refused() {
        let cases = [
            ("lane.get", json!({}), "id is required"),
            ("lane.get", json!({ "id": 7 }), "id must be a non-empty string"),
            ("lane.get", json!({ "id": "l1", "body": {} }), "lane.get takes no argument \"body\""),
            ("lane.get", json!({ "id": "l1", "idempotency_key": "k" }), "takes no argument \"idempotency_key\""),
            ("lane.checkpoint", json!({ "id": "l1", "idempotency_key": "has space" }), "idempotency_key must be"),
            ("handoff.await_decision", json!({ "id": "l1", "wait": [1] }), "wait must be a string"),
        ];
        for (tool, args, expected) in cases {
            let refusal = route(tool, args.clone()).unwrap_err();
            assert!(refusal.contains(expected), "{tool} {args}: {refusal}");
        }
    }

    #[test]
    fn a_keyed_call_without_a_key_is_keyed_by_its_arguments() {
        let key = |args: Value| route("lane.checkpoint", args).unwrap().2.unwrap();
        let a = key(json!({ "id": "l1", "body": { "name": "c1", "state": { "x": 1, "y": 2 } } }));
        assert_eq!(
            a,
            key(json!({ "body": { "state": { "y": 2, "x": 1 }, "name": "c1" }, "id": "l1" })),
            "order is not meaning"
        );
        assert_ne!(a, key(json!({ "id": "l1", "body": { "name": "c2" } })));
        assert_ne!(a, key(json!({ "id": "l2", "body": { "name": "c1", "state": { "x": 1, "y": 2 } } })));
        assert_eq!(key(json!({ "id": "l1", "body": {}, "idempotency_key": "mine-1" })), "mine-1");
    }

    #[test]
    fn only_an_open_handoff_is_pending() {
        for (status, pending) in [("OPEN", true), ("DECIDED", false), ("EXPIRED", false), ("CLOSED", false)] {
            let answer = Answer { status: 200, body: json!({ "handoff_status": status }), replayed: false };
            assert_eq!(pending_marked(answer).structured_content.unwrap()["pending"], pending, "{status}");
        }
        let no_handoff = Answer { status: 200, body: json!({ "handoff_status": null }), replayed: false };
        assert_eq!(pending_marked(no_handoff).structured_content.unwrap()["pending"], false);
    }

    #[test]
    fn the_catalogue_is_the_policy_table_for_the_caller() {
        let admin = Principal {
            sub: "root".into(),
            role: policy::Role::Admin,
            accounts: vec!["*".into()],
            sites: vec!["*".into()],
            tools: None,
            queues: vec![],
        };
        let names: Vec<String> = catalogue(&admin).into_iter().map(|t| t.name.into_owned()).collect();
        let expected: Vec<&str> = policy::TOOLS
            .iter()
            .filter(|t| t.roles.contains(&policy::Role::Admin) && !NOT_OVER_MCP.contains(&t.name))
            .map(|t| t.name)
            .collect();
        assert_eq!(names, expected);
        let narrow = Principal { tools: Some(vec!["lane.get".into(), "node.drain".into()]), ..admin };
        let tools = catalogue(&narrow);
        assert_eq!(tools.iter().map(|t| t.name.as_ref()).collect::<Vec<_>>(), ["node.drain", "lane.get"]);
        let schema = Value::Object((*tools[1].input_schema).clone());
        assert_eq!(schema["required"], json!(["id"]));
        assert_eq!(schema["additionalProperties"], false);
    }
}
