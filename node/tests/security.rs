//! The negative security suite: every way a request can be unauthenticated or
//! unauthorized fails closed, with the right status and code, and writes nothing.
//! The orchestrator runs in-process (real HTTP, real key) so edge-case tokens can be
//! signed with the server's own key.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use base64::Engine;
use dispatch_node::auth::{AUDIENCE, Claims, ISSUER};
use dispatch_node::server::{Orchestrator, ServerConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

struct Env {
    _dir: tempfile::TempDir,
    server: Orchestrator,
    url: String,
    http: reqwest::Client,
    admin: String,
}

fn config(dir: &std::path::Path) -> ServerConfig {
    support::server_config(dir)
}

async fn start() -> Env {
    start_with(|c| c).await
}

async fn start_with(adjust: impl FnOnce(ServerConfig) -> ServerConfig) -> Env {
    let dir = support::tempdir();
    let server = Orchestrator::start(adjust(config(dir.path()))).await.unwrap();
    let url = format!("http://{}", server.addr);
    let admin = server.app.auth.mint(&principal("admin", "admin", &["*"]), 600).unwrap().0;
    Env { _dir: dir, url, server, http: support::client_builder().pool_max_idle_per_host(0).build().unwrap(), admin }
}

fn principal(sub: &str, role: &str, accounts: &[&str]) -> actors::policy::Principal {
    actors::policy::Principal {
        sub: sub.into(),
        role: serde_json::from_value(json!(role)).unwrap(),
        accounts: accounts.iter().map(|s| s.to_string()).collect(),
        sites: vec!["*".into()],
        tools: None,
        queues: vec![],
    }
}

impl Env {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.url));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("idempotency-key", uuid::Uuid::new_v4().to_string()).json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn token(&self, role: &str, sub: &str, accounts: &[&str]) -> String {
        self.server.app.auth.mint(&principal(sub, role, accounts), 600).unwrap().0
    }

    fn claims(&self, sub: &str) -> Claims {
        Claims::for_principal(&principal(sub, "dispatcher", &["acct-1"]), 600, None)
    }

    /// Creates a person's account with [`PASSWORD`].
    async fn add_person(&self, username: &str, accounts: &[&str]) {
        let body = json!({ "username": username, "role": "dispatcher", "accounts": accounts, "password": PASSWORD });
        let (status, created) = self.call("POST", "/v1/users", &self.admin, &[], Some(body)).await;
        assert_eq!(status, 201, "{created}");
    }

    /// Logs in with [`PASSWORD`]: status and token pair.
    async fn login(&self, username: &str) -> (u16, Value) {
        self.call("POST", "/v1/auth/login", "", &[], Some(json!({ "username": username, "password": PASSWORD }))).await
    }

    fn events(&self) -> u64 {
        self.server.app.log.global_len().unwrap()
    }
}

const PASSWORD: &str = "correct horse battery";

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[tokio::test]
async fn every_bad_token_and_every_policy_breach_fails_closed_and_writes_nothing() {
    let env = start().await;
    let auth = &env.server.app.auth;
    let kid = auth.current_kid();

    // A dispatched ticket on acct-1, assigned to tech-1.
    let dispatcher = env.token("dispatcher", "disp-1", &["acct-1"]);
    let (_, t) = env
        .call(
            "POST",
            "/v1/tickets",
            &dispatcher,
            &[],
            Some(json!({ "account_id": "acct-1", "site_id": "s1", "incident_type": "LOCKOUT", "summary": "x" })),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let w = json!({ "start": "2026-11-23T09:00:00Z", "end": "2026-11-23T10:00:00Z" });
    for (p, b) in [
        ("triage", json!({ "workflow_outcome": "READY_TO_SCHEDULE" })),
        ("schedule/propose", json!({ "windows": [w] })),
        ("schedule/confirm", json!({ "window": w })),
        ("assignment/dispatch", json!({ "technician_id": "tech-1" })),
    ] {
        assert_eq!(env.call("POST", &format!("/v1/tickets/{id}/{p}"), &dispatcher, &[], Some(b)).await.0, 200);
    }

    // Crafted tokens.
    let sign = |c: &Value| auth.sign(c).unwrap();
    let mut expired = env.claims("disp-1");
    expired.exp -= 7200;
    expired.iat -= 7200;
    let mut not_yet = env.claims("disp-1");
    not_yet.nbf = Some(not_yet.iat + 3600);
    let mut wrong_iss = env.claims("disp-1");
    wrong_iss.iss = "someone-else".into();
    let mut wrong_aud = env.claims("disp-1");
    wrong_aud.aud = "another-api".into();
    let mut no_sub = serde_json::to_value(env.claims("disp-1")).unwrap();
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut no_role = serde_json::to_value(env.claims("disp-1")).unwrap();
    no_role.as_object_mut().unwrap().remove("role");
    let body = serde_json::to_vec(&env.claims("disp-1")).unwrap();
    let header = |alg: &str, kid: &str| b64(json!({ "alg": alg, "typ": "JWT", "kid": kid }).to_string().as_bytes());
    let alg_none = format!("{}.{}.", header("none", &kid), b64(&body));
    // HS256 "signed" with the server's published public key, the classic confusion attack.
    let (_, keys) = env.call("GET", "/v1/auth/keys", "", &[], None).await;
    let public =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(keys["keys"][0]["x"].as_str().unwrap()).unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(&hs, &env.claims("disp-1"), &EncodingKey::from_secret(&public)).unwrap();
    // Signed by another Ed25519 key but claiming the server's kid.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&other).unwrap();
    let mut ed = Header::new(Algorithm::EdDSA);
    ed.kid = Some(kid.clone());
    let forged = jsonwebtoken::encode(&ed, &env.claims("disp-1"), &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    ed.kid = Some("0000000000000000".into());
    let unknown_kid =
        jsonwebtoken::encode(&ed, &env.claims("disp-1"), &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    let good = env.token("dispatcher", "disp-1", &["acct-1"]);
    let parts: Vec<&str> = good.split('.').collect();
    let tampered =
        format!("{}.{}.{}", parts[0], b64(br#"{"sub":"x","role":"admin","accounts":["*"],"sites":["*"]}"#), parts[2]);

    let (_, svc) = env
        .call(
            "POST",
            "/v1/users",
            &env.admin,
            &[],
            Some(json!({ "username": "bot", "role": "agent", "service": true, "tools": ["ticket.get"] })),
        )
        .await;
    let bot = svc["token"].as_str().unwrap().to_owned();
    let read = format!("/v1/tickets/{id}");
    let unauthenticated = [
        ("forged signature", forged),
        ("claims tampered", tampered),
        ("alg none", alg_none),
        ("HS256 with the public key", hs256),
        ("expired", sign(&serde_json::to_value(&expired).unwrap())),
        ("not yet valid", sign(&serde_json::to_value(&not_yet).unwrap())),
        ("wrong issuer", sign(&serde_json::to_value(&wrong_iss).unwrap())),
        ("wrong audience", sign(&serde_json::to_value(&wrong_aud).unwrap())),
        ("missing sub", sign(&no_sub)),
        ("missing role", sign(&no_role)),
        ("unknown kid", unknown_kid),
    ];
    let before = env.events();
    for (name, token) in &unauthenticated {
        for (method, path, body) in [
            ("GET", read.as_str(), None),
            (
                "POST",
                "/v1/tickets",
                Some(json!({ "account_id": "acct-1", "site_id": "s1", "incident_type": "LOCKOUT", "summary": "x" })),
            ),
        ] {
            let (status, err) = env.call(method, path, token, &[], body).await;
            assert_eq!((status, err["error"]["code"].as_str()), (401, Some("UNAUTHORIZED")), "{name} {method}: {err}");
        }
    }
    assert_eq!(ISSUER, "dispatch");
    assert_eq!(AUDIENCE, "dispatch-api");

    // Policy breaches with valid tokens.
    let qa = env.token("qa", "qa-1", &["acct-1"]);
    let outsider = env.token("dispatcher", "disp-9", &["acct-9"]);
    let other_tech = env.token("technician", "tech-2", &["acct-1"]);
    let tech = env.token("technician", "tech-1", &["acct-1"]);
    let check_in = format!("/v1/tickets/{id}/tech/check-in");
    let cancel = format!("/v1/tickets/{id}/cancel");
    let timeline = format!("/v1/tickets/{id}/timeline");
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no token", "GET", &read, "", vec![], 401, "UNAUTHORIZED"),
        (
            "dev headers without the flag",
            "GET",
            &read,
            "",
            vec![("x-actor-id", "a"), ("x-actor-role", "admin")],
            401,
            "UNAUTHORIZED",
        ),
        ("role not allowed", "POST", &cancel, &qa, vec![], 403, "FORBIDDEN"),
        ("write out of scope", "POST", &cancel, &outsider, vec![], 403, "SCOPE_FORBIDDEN"),
        ("read out of scope", "GET", &read, &outsider, vec![], 403, "SCOPE_FORBIDDEN"),
        ("timeline out of scope", "GET", &timeline, &outsider, vec![], 403, "SCOPE_FORBIDDEN"),
        ("not the assignee", "POST", &check_in, &other_tech, vec![], 403, "FORBIDDEN"),
        (
            "tool header mismatched",
            "POST",
            &check_in,
            &tech,
            vec![("x-tool-name", "tech.complete")],
            403,
            "TOOL_NOT_ALLOWED",
        ),
        (
            "tool outside the token's list",
            "GET",
            &timeline,
            &bot,
            vec![("x-tool-name", "ticket.timeline")],
            403,
            "TOOL_NOT_ALLOWED",
        ),
        (
            "role outside the token's role",
            "POST",
            &cancel,
            &bot,
            vec![("x-tool-name", "ticket.cancel")],
            403,
            "FORBIDDEN",
        ),
        ("tool-limited token without X-Tool-Name", "GET", &read, &bot, vec![], 403, "TOOL_NOT_ALLOWED"),
        ("non-admin creates a user", "POST", "/v1/users", &dispatcher, vec![], 403, "FORBIDDEN"),
    ];
    for (name, method, path, token, headers, status, code) in cases {
        let body = (method == "POST")
            .then(|| json!({ "reason": "x", "username": "eve", "role": "admin", "password": PASSWORD }));
        let (got, err) = env.call(method, path, token, &headers, body).await;
        assert_eq!((got, err["error"]["code"].as_str()), (status, Some(code)), "{name}: {err}");
    }
    assert_eq!(env.events(), before, "no refusal wrote anything");
    // The narrow service token works for its tool when it names it.
    assert_eq!(env.call("GET", &read, &bot, &[("x-tool-name", "ticket.get")], None).await.0, 200);

    // Revoked and disabled fail at once, inside their lifetime.
    env.add_person("ann", &["acct-1"]).await;
    let (status, pair) = env.login("ann").await;
    assert_eq!(status, 200, "{pair}");
    let ann = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(env.call("GET", &read, &ann, &[], None).await.0, 200);
    assert_eq!(env.call("POST", "/v1/auth/logout", &ann, &[], Some(json!({}))).await.0, 204);
    let (status, err) = env.call("GET", &read, &ann, &[], None).await;
    assert_eq!((status, err["error"]["message"].as_str()), (401, Some("access token revoked")), "revoked after logout");

    let (_, pair) = env.login("ann").await;
    let ann = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(env.call("POST", "/v1/users/ann/disable", &env.admin, &[], None).await.0, 200);
    assert_eq!(env.call("GET", &read, &ann, &[], None).await.0, 401, "disabled user's live token");
    let (status, _) = env.login("ann").await;
    assert_eq!(status, 401, "disabled user cannot log in");
    assert_eq!(
        env.call("POST", "/v1/auth/refresh", "", &[], Some(json!({ "refresh_token": pair["refresh_token"] }))).await.0,
        401
    );
    assert_eq!(env.call("GET", &read, &bot, &[("x-tool-name", "ticket.get")], None).await.0, 200, "others unaffected");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_session() {
    let env = start().await;
    env.add_person("ann", &["*"]).await;
    let (_, first) = env.login("ann").await;
    assert_eq!(first["expires_in"], 900, "15-minute access tokens");
    let refresh = |t: &Value| json!({ "refresh_token": t["refresh_token"] });

    let (status, second) = env.call("POST", "/v1/auth/refresh", "", &[], Some(refresh(&first))).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    let (_, me) = env.call("GET", "/v1/me", second["access_token"].as_str().unwrap(), &[], None).await;
    assert_eq!(me["principal"]["sub"], "ann");

    // The first token again: theft. The session dies, including the newest tokens.
    let (status, err) = env.call("POST", "/v1/auth/refresh", "", &[], Some(refresh(&first))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (401, Some("REFRESH_TOKEN_REUSED")));
    assert_eq!(env.call("POST", "/v1/auth/refresh", "", &[], Some(refresh(&second))).await.0, 401);
    assert_eq!(env.call("GET", "/v1/me", second["access_token"].as_str().unwrap(), &[], None).await.0, 401);

    // Another login is a new session, unaffected; logging out by refresh token ends it.
    let (_, third) = env.login("ann").await;
    assert_eq!(env.call("GET", "/v1/me", third["access_token"].as_str().unwrap(), &[], None).await.0, 200);
    assert_eq!(env.call("POST", "/v1/auth/logout", "", &[], Some(refresh(&third))).await.0, 204);
    assert_eq!(env.call("POST", "/v1/auth/refresh", "", &[], Some(refresh(&third))).await.0, 401);
    assert_eq!(env.call("GET", "/v1/me", third["access_token"].as_str().unwrap(), &[], None).await.0, 401);
}

#[tokio::test]
async fn logins_are_rate_limited_per_username_and_per_client() {
    let env = start().await;
    env.add_person("ann", &["*"]).await;
    for _ in 0..5 {
        let (status, _) = env
            .call("POST", "/v1/auth/login", "", &[], Some(json!({ "username": "ann", "password": "wrong password!" })))
            .await;
        assert_eq!(status, 401);
    }
    let (status, err) = env.login("ann").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "even the right password waits: {err}"
    );
    assert!(err["error"]["details"]["retry_after_seconds"].as_u64().unwrap() > 0);

    // Per client address: another loopback address still gets in; this one is cut off.
    for i in 0..30 {
        env.call("POST", "/v1/auth/login", "", &[], Some(json!({ "username": format!("nobody{i}"), "password": "x" })))
            .await;
    }
    let (status, _) =
        env.call("POST", "/v1/auth/login", "", &[], Some(json!({ "username": "someone", "password": "x" }))).await;
    assert_eq!(status, 429);
    let elsewhere =
        support::client_builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let resp = elsewhere
        .post(format!("{}/v1/auth/login", env.url))
        .json(&json!({ "username": "nobody", "password": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "a different client is not limited by this one");

    let metrics = env.server.app.metrics.render();
    assert!(metrics.contains("dispatch_auth_logins_total{outcome=\"failure\"}"), "failures are counted");
    assert!(metrics.contains("dispatch_auth_logins_total{outcome=\"rate_limited\"}"));
}

#[tokio::test]
async fn a_rotated_key_signs_new_tokens_and_old_ones_stay_valid() {
    let env = start().await;
    let old = env.token("dispatcher", "d", &["*"]);
    let old_kid = env.server.app.auth.current_kid();
    let (status, rotated) = env.call("POST", "/v1/admin/signing-keys", &env.admin, &[], Some(json!({}))).await;
    assert_eq!(status, 201, "{rotated}");
    assert_ne!(rotated["kid"].as_str().unwrap(), old_kid);
    let new = env.token("dispatcher", "d", &["*"]);
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_eq!(kid_of(&new), rotated["kid"].as_str().unwrap());
    for t in [&old, &new] {
        assert_eq!(env.call("GET", "/v1/tickets", t, &[], None).await.0, 200);
    }
    let (_, keys) = env.call("GET", "/v1/auth/keys", "", &[], None).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_tool_catalogue_is_what_the_caller_may_use() {
    let env = start().await;
    let tech = env.token("technician", "t", &["*"]);
    let (status, cat) = env.call("GET", "/v1/tools", &tech, &[], None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = cat["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"tech.check_in") && names.contains(&"ticket.get"));
    assert!(!names.contains(&"ticket.cancel") && !names.contains(&"user.create"), "{names:?}");
    let complete = cat["tools"].as_array().unwrap().iter().find(|t| t["name"] == "tech.complete").unwrap();
    assert_eq!(complete["allowed_states"], json!(["IN_PROGRESS"]));
    assert_eq!(complete["path"], "/v1/tickets/{id}/tech/complete");
    assert!(complete["body_schema"]["properties"]["checklist"].is_object(), "{complete}");
    assert!(complete["body_schema"].to_string().find("$ref").is_none(), "schemas stand alone");
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let env = start().await;
    env.add_person("ann", &["*"]).await;
    env.add_person("cy", &["*"]).await;
    let (_, ann) = env.login("ann").await;
    let (_, cy) = env.login("cy").await;
    let (ann, cy) = (ann["access_token"].as_str().unwrap().to_owned(), cy["access_token"].as_str().unwrap().to_owned());
    assert_eq!(env.call("POST", "/v1/auth/logout", &ann, &[], Some(json!({}))).await.0, 204);
    assert_eq!(env.call("POST", "/v1/users/cy/disable", &env.admin, &[], None).await.0, 200);

    let Env { _dir: dir, server, .. } = env;
    server.shutdown().await.unwrap();
    let restarted = Orchestrator::start(config(dir.path())).await.unwrap();
    let http = support::client_builder().build().unwrap();
    for token in [&ann, &cy] {
        let resp = http.get(format!("http://{}/v1/me", restarted.addr)).bearer_auth(token).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "a revoked token came back to life after a restart");
    }
    restarted.shutdown().await.unwrap();
}

#[tokio::test]
async fn lane_actors_passivate_and_caller_chosen_labels_stay_bounded() {
    let lanes = actors::kernel::SupervisorConfig { max_live: 2, ..Default::default() };
    let env = start_with(|c| ServerConfig { lanes, ..c }).await;
    let agent = env.token("agent", "bot", &["*"]);
    for i in 0..70 {
        let id = format!("lane-{i}");
        assert_eq!(env.call("POST", "/v1/lanes", &agent, &[], Some(json!({ "lane_id": id }))).await.0, 201);
        let cp = json!({ "name": "c1", "state": {} });
        assert_eq!(env.call("POST", &format!("/v1/lanes/{id}/checkpoints"), &agent, &[], Some(cp)).await.0, 200);
        let handoff = json!({ "checkpoint": "c1", "trigger_class": format!("class-{i}"), "reason": "r", "context": {},
            "queue": format!("queue-{i}"), "sla_seconds": 600, "deadline_seconds": 3600, "timeout_action": "reject" });
        let (status, body) = env.call("POST", &format!("/v1/lanes/{id}/handoffs"), &agent, &[], Some(handoff)).await;
        assert_eq!(status, 201, "{body}");
    }
    let metrics = env.server.app.metrics.render();
    let live = metrics.lines().find(|l| l.starts_with("dispatch_live_actors{kind=\"lane\"}")).unwrap();
    let live: f64 = live.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(live <= 2.0, "lane actors are passivated past max_live: {live}");
    let (status, lane) = env.call("GET", "/v1/lanes/lane-0", &agent, &[], None).await;
    assert_eq!((status, lane["status"].as_str()), (200, Some("WAITING_HUMAN")), "woken from the log: {lane}");
    let series = |name: &str| metrics.lines().filter(|l| l.starts_with(name)).count();
    assert!(series("dispatch_handoffs_requested_total{") <= actors::labels::MAX_VALUES + 1, "trigger classes bounded");
    assert!(series("dispatch_open_handoffs{") <= actors::labels::MAX_VALUES + 1, "queues bounded");
    assert!(metrics.contains("queue=\"other\""), "the rest fold into other");
}

/// Reads until the server closes `conn` (bounded); what it sent before closing.
async fn until_closed(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    seen
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off_and_connections_are_capped() {
    use tokio::io::AsyncWriteExt;
    let http = dispatch_node::http::HttpLimits {
        max_connections: 2,
        header_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let env = start_with(|c| ServerConfig { edge: dispatch_node::server::EdgeConfig { http, ..c.edge }, ..c }).await;
    let addr = env.server.addr;
    // Slowloris: half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{answer:?}");

    // Two connections held open fill the cap: a third is closed without an answer.
    let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(until_closed(&mut third).await.is_empty(), "served past the cap");
    let refused = env.server.app.metrics.render();
    assert!(refused.contains("dispatch_http_connections_refused_total"), "counted");
}
