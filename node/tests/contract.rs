//! The API contract, checked by independent tools against a real `dispatch up`: the
//! OpenAPI document validates (openapi-spec-validator), schemathesis finds nothing with
//! all its checks and its stateful phase (as an admin, as a technician and without a
//! token), and a client generated from the document (openapi-python-client) completes
//! the ticket lifecycle. `.ci/run` installs the tools at pinned versions; elsewhere a
//! missing one is said loudly and its test skips.
//!
//! The fuzzer may call every operation but these two, which would end its own run:
//! `auth.logout` (ends its session) and `admin.lanes.freeze` (every later lane creation
//! answers the documented 503 `LANES_FROZEN`, which schemathesis counts as a server
//! error). `contract/hooks.py` keeps it from revoking its own token, key or account.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use support::Server;

const INSTALL: &str = "python3 -m pip install schemathesis openapi-spec-validator openapi-python-client";
/// Examples per operation and phase: a few minutes per identity on two cores.
const MAX_EXAMPLES: &str = "50";
/// Fixed, so a finding replays with the same seed (`--seed`).
const SEED: &str = "20261122";

fn contract_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract"))
}

/// The document as the server serves it, written to `dir`.
async fn fetch_document(s: &Server, dir: &Path) -> std::path::PathBuf {
    let doc = support::get(format!("{}/v1/openapi.json", s.url)).await.unwrap().text().await.unwrap();
    let path = dir.join("openapi.json");
    std::fs::write(&path, doc).unwrap();
    path
}

fn report(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    format!("{what} exited with {}:\n{stdout}\n{stderr}", out.status)
}

#[tokio::test]
async fn the_document_passes_openapi_spec_validator() {
    if !support::have_tool("openapi-spec-validator", INSTALL) {
        return;
    }
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let doc = fetch_document(&s, dir.path()).await;
    let out = Command::new("openapi-spec-validator").arg(&doc).output().unwrap();
    assert!(out.status.success(), "{}", report("openapi-spec-validator", &out));
}

/// schemathesis with every check against a fresh server, as `token`'s holder (or
/// nobody); fails on any finding. (`--max-time` would not bound the run: schemathesis
/// repeats until it is spent; `timeout` stops a run that hangs.)
fn fuzz(s: &Server, who: &str, token: Option<&str>, workdir: &Path) {
    let config = contract_dir().join(if token.is_some() { "schemathesis.toml" } else { "anonymous.toml" });
    let mut run = Command::new("timeout");
    run.args(["600", "schemathesis", "--no-color", "--config-file"]).arg(&config);
    run.args(["run", &format!("{}/v1/openapi.json", s.url), "--checks", "all", "--workers", "1"]);
    run.args(["--max-examples", MAX_EXAMPLES, "--seed", SEED]);
    run.args(["--exclude-operation-id", "auth.logout", "--exclude-operation-id", "admin.lanes.freeze"]);
    // The event stream answers 200 and then never ends: node/tests/stream.rs drives it.
    run.args(["--exclude-operation-id", "events.stream"]);
    // Its cache and reports go to the test's temp dir, none of Python's to the source tree.
    run.current_dir(workdir).env("PYTHONDONTWRITEBYTECODE", "1");
    run.env("SCHEMATHESIS_HOOKS", "hooks").env("PYTHONPATH", contract_dir());
    match token {
        Some(token) => run.env("DISPATCH_TOKEN", token),
        None => run.env_remove("DISPATCH_TOKEN"),
    };
    let out = run.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", report("schemathesis", &out));
    // The summary line, e.g. "6791 generated, 6791 passed, 52 skipped", for the log.
    let summary = stdout.lines().find(|l| l.contains(" generated, ")).unwrap_or("no summary");
    eprintln!("schemathesis as {who}: {}", summary.trim());
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_an_admin() {
    if !support::have_tool("schemathesis", INSTALL) {
        return;
    }
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    fuzz(&s, "an admin", Some(&s.admin_token), dir.path());
    // The fuzzer tried to disable, demote and remove what keeps the install usable.
    let (status, me) = s.send("GET", "/v1/me", &s.admin_token, None, None).await;
    assert_eq!((status, me["principal"]["role"].as_str()), (200, Some("admin")), "{me}");
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_a_technician() {
    if !support::have_tool("schemathesis", INSTALL) {
        return;
    }
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let technician = s.token("tess", "technician", &["*"], &["*"]).await;
    fuzz(&s, "a technician", Some(&technician), dir.path());
}

#[tokio::test]
async fn schemathesis_finds_nothing_without_a_token() {
    if !support::have_tool("schemathesis", INSTALL) {
        return;
    }
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    fuzz(&s, "nobody", None, dir.path());
}

#[tokio::test]
async fn a_generated_client_completes_the_ticket_lifecycle() {
    if !support::have_tool("openapi-python-client", INSTALL) {
        return;
    }
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let doc = fetch_document(&s, dir.path()).await;
    let client = dir.path().join("dispatch_client");
    let out = Command::new("openapi-python-client")
        .args(["generate", "--meta", "none", "--path"])
        .arg(&doc)
        .arg("--output-path")
        .arg(&client)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !said.contains("Warning"), "{}", report("openapi-python-client", &out));

    let mut tokens = serde_json::Map::new();
    for (role, sub) in
        [("dispatcher", "dina"), ("manager", "mo"), ("technician", "tech-1"), ("qa", "quinn"), ("billing", "bill")]
    {
        tokens.insert(role.into(), json!(s.token(sub, role, &["*"], &["*"]).await));
    }
    let out = Command::new("python3")
        .arg(contract_dir().join("lifecycle.py"))
        .env("PYTHONPATH", dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("DISPATCH_URL", &s.url)
        .env("DISPATCH_TOKENS", serde_json::Value::Object(tokens).to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report("lifecycle.py", &out));
    let states: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert!(states.contains(&"APPROVAL_REQUIRED".to_owned()), "approval/decide was on the path: {states:?}");
    assert_eq!(states.last().map(String::as_str), Some("read back: CLOSED"), "{states:?}");
}
