//! Property-based fuzzing of what callers send: access tokens (JWTs), the event
//! envelope and ticket command bodies, through the real HTTP API of an in-process
//! orchestrator. Nothing may answer 5xx or take the server down. `FUZZ_CASES` sets
//! the cases per target (HTTP targets run a quarter of them); `fuzz/run.sh` runs them
//! for as long as asked.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::sync::OnceLock;

use dispatch_node::auth::Auth;
use dispatch_node::server::Orchestrator;
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// One orchestrator for the whole file, on its own runtime.
struct Target {
    rt: tokio::runtime::Runtime,
    url: String,
    http: reqwest::Client,
    admin: String,
    agent: String,
    ticket: String,
    _server: Orchestrator,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = support::tempdir();
        let config = support::server_config(dir.path());
        let server = rt.block_on(Orchestrator::start(config)).unwrap();
        let url = format!("http://{}", server.addr);
        let mint = |sub: &str, role: &str| {
            let p = actors::policy::Principal {
                sub: sub.into(),
                role: serde_json::from_value(json!(role)).unwrap(),
                accounts: vec!["*".into()],
                sites: vec!["*".into()],
                tools: None,
                queues: vec!["*".into()],
            };
            server.app.auth.mint(&p, 3600).unwrap().0
        };
        let (admin, agent) = (mint("admin", "admin"), mint("bot", "agent"));
        let http = support::client_builder().build().unwrap();
        let mut t = Target { rt, url, http, admin, agent, ticket: String::new(), _server: server, _dir: dir };
        let body = json!({ "account_id": "a", "site_id": "s", "incident_type": "DOOR_WONT_LATCH", "summary": "fuzz" });
        let (_, created) = t.post("/v1/tickets", &t.admin.clone(), body.to_string().into_bytes());
        t.ticket = created["id"].as_str().unwrap().to_owned();
        for step in [json!({ "lane_id": "fuzz-lane" }), json!({ "name": "c1", "state": {} })] {
            let path = if step.get("lane_id").is_some() {
                "/v1/lanes".to_owned()
            } else {
                "/v1/lanes/fuzz-lane/checkpoints".to_owned()
            };
            t.post(&path, &t.agent.clone(), step.to_string().into_bytes());
        }
        t
    })
}

impl Target {
    fn post(&self, path: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("{}{path}", self.url))
                .bearer_auth(token)
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("the server answers");
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        })
    }
}

/// Any JSON value, three levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn envelope() -> Value {
    json!({ "type": "handoff.requested", "version": "1.0", "id": "h-fuzz", "request_id": "r-fuzz", "lane_id": "fuzz-lane",
            "occurred_at": "2026-11-21T10:00:00Z", "actor": { "kind": "agent", "id": "bot" },
            "data": { "checkpoint": "c1", "trigger_class": "policy", "reason": "r", "context": {}, "queue": "ops",
                      "sla_seconds": 600, "deadline_seconds": 3600, "timeout_action": "reject" } })
}

/// A valid envelope with one field (top level or in `data`) replaced.
fn mutated_envelope() -> impl Strategy<Value = Value> {
    let fields = ["type", "version", "id", "request_id", "lane_id", "occurred_at", "actor", "data"];
    let data_fields =
        ["checkpoint", "trigger_class", "queue", "sla_seconds", "deadline_seconds", "timeout_action", "context"];
    (0..fields.len() + data_fields.len(), json_value()).prop_map(move |(i, v)| {
        let mut e = envelope();
        match fields.get(i) {
            Some(f) => e[*f] = v,
            None => e["data"][data_fields[i - fields.len()]] = v,
        }
        e
    })
}

const TICKET_COMMANDS: [&str; 13] = [
    "triage",
    "schedule/propose",
    "schedule/confirm",
    "assignment/dispatch",
    "tech/check-in",
    "tech/request-change",
    "approval/decide",
    "evidence",
    "tech/complete",
    "qa/verify",
    "billing/generate-invoice",
    "close",
    "cancel",
];

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn access_tokens_fail_closed(raw in ".{0,400}", header in "[A-Za-z0-9_-]{0,80}", claims in "[A-Za-z0-9_-]{0,300}", sig in "[A-Za-z0-9_-]{0,90}") {
        static AUTH: OnceLock<(tempfile::TempDir, Auth)> = OnceLock::new();
        let (_, auth) = AUTH.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let log = storage::Log::open(dir.path().join("l.redb")).unwrap();
            let auth = Auth::load_or_create(&log).unwrap();
            (dir, auth)
        });
        for token in [raw.clone(), format!("{header}.{claims}.{sig}")] {
            prop_assert!(auth.verify(&token).is_err());
        }
    }
}

proptest! {
    #![proptest_config(config((cases() / 4).max(1)))]

    #[test]
    fn envelopes_never_break_the_server(body in prop_oneof![json_value(), mutated_envelope()], raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let t = target();
        let (status, answer) = t.post("/v1/events", &t.agent, body.to_string().into_bytes());
        prop_assert!(status < 500, "{status} for {body}: {answer}");
        let (status, answer) = t.post("/v1/events", &t.agent, raw);
        prop_assert!(status < 500, "{status} for raw bytes: {answer}");
    }

    #[test]
    fn ticket_bodies_never_break_the_server(body in json_value(), command in 0..TICKET_COMMANDS.len() + 1) {
        let t = target();
        let path = match TICKET_COMMANDS.get(command) {
            Some(c) => format!("/v1/tickets/{}/{c}", t.ticket),
            None => "/v1/tickets".to_owned(),
        };
        let (status, answer) = t.post(&path, &t.admin, body.to_string().into_bytes());
        prop_assert!(status < 500, "{status} on {path} for {body}: {answer}");
    }
}
