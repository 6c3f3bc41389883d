//! The alert rules of `deploy/prometheus`: promtool checks and unit-tests them, every
//! alert has a runbook whose commands the CLI accepts, and a drill runs Debian's real
//! Prometheus with these rules against a real orchestrator, provokes four conditions
//! (auth failures, completion rejections, a handoff SLA miss, a lost node), sees each
//! alert fire in Prometheus' own API and then resolve.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Crew, Server};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

/// Every alert of alerts.yml: (name, runbook page).
fn alerts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("- alert: ") {
            name = Some(n.to_owned());
        }
        if let Some(url) = line.strip_prefix("runbook_url: \"{{ $externalLabels.runbook_base }}/") {
            out.push((name.take().expect("runbook_url after its alert"), url.trim_end_matches('"').to_owned()));
        }
    }
    out
}

#[test]
fn every_alert_passes_promtool_and_has_a_runbook_whose_commands_parse() {
    let alerts = alerts();
    assert!(alerts.len() >= 14, "{alerts:?}");
    if support::have_prometheus_tool("promtool") {
        for args in
            [vec!["check", "rules", "recording.yml", "alerts.yml"], vec!["test", "rules", "tests/alerts.test.yml"]]
        {
            let out = Command::new("promtool").args(&args).current_dir(deploy("prometheus")).output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "promtool {args:?}:\n{said}");
        }
        let tests = std::fs::read_to_string(deploy("prometheus/tests/alerts.test.yml")).unwrap();
        for (name, _) in &alerts {
            assert!(tests.contains(&format!("alertname: {name}\n")), "{name} has no promtool unit test");
        }
    }
    let index = std::fs::read_to_string(deploy("runbooks/README.md")).unwrap();
    for (name, page) in &alerts {
        let text = std::fs::read_to_string(deploy(&format!("runbooks/{page}")))
            .unwrap_or_else(|e| panic!("{name}: runbook {page}: {e}"));
        assert!(text.starts_with(&format!("# {name}\n")), "{page} is not {name}'s page");
        for part in ["**Means:**", "**Confirm", "**Fix", "**Verify:**"] {
            assert!(text.contains(part), "{page} lacks {part}");
        }
        assert!(index.contains(&format!("| {name} | [{page}]({page}) |")), "runbooks/README.md lacks {name}");
        for command in shell_commands(&text) {
            let out = Command::new(env!("CARGO_BIN_EXE_dispatch")).args(&command).arg("--help").output().unwrap();
            assert!(
                out.status.success(),
                "{page}: `dispatch {}` is not a command the CLI takes:\n{}",
                command.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The `dispatch …` lines of a page's shell blocks, split into arguments.
fn shell_commands(page: &str) -> Vec<Vec<String>> {
    let mut in_block = false;
    let mut out = Vec::new();
    for line in page.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        let Some(rest) = line.strip_prefix("dispatch ").filter(|_| in_block) else { continue };
        let rest = rest.split(" #").next().unwrap();
        let mut args = Vec::new();
        for (i, part) in rest.split('"').enumerate() {
            match i % 2 {
                0 => args.extend(part.split_whitespace().map(str::to_owned)),
                _ => args.push(part.to_owned()),
            }
        }
        out.push(args);
    }
    out
}

/// The deploy rules with their time scaled for a drill: windows of 20 s, no `for`,
/// rules evaluated every second. Thresholds and expressions stay as shipped.
fn drill_rules(dir: &Path) -> Vec<PathBuf> {
    ["recording.yml", "alerts.yml"]
        .iter()
        .map(|name| {
            let mut text = std::fs::read_to_string(deploy(&format!("prometheus/{name}"))).unwrap();
            for window in ["[5m]", "[10m]", "[15m]", "[30m]", "[1h]"] {
                text = text.replace(window, "[20s]");
            }
            text = text.replace("interval: 30s", "interval: 1s");
            let text: String = text
                .lines()
                .map(|l| if l.trim_start().starts_with("for: ") { "" } else { l })
                .collect::<Vec<_>>()
                .join("\n");
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

struct Prometheus {
    child: Child,
    api: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &Path, target: &str) -> Prometheus {
    let rules = drill_rules(dir);
    let config = dir.join("prometheus.yml");
    let files: Vec<String> = rules.iter().map(|r| format!("'{}'", r.display())).collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    runbook_base: https://runbooks.test/dispatch\n\
             rule_files: [{}]\nscrape_configs:\n  - job_name: dispatch\n    static_configs:\n      - targets: ['{target}']\n",
            files.join(", ")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    Prometheus { child, api: format!("http://127.0.0.1:{port}/api/v1") }
}

/// Alerts firing now, by name, with their annotations.
async fn firing(p: &Prometheus) -> Vec<(String, Value)> {
    let Ok(r) = support::get(format!("{}/alerts", p.api)).await else { return vec![] };
    let body: Value = r.json().await.unwrap_or_default();
    body["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| (a["labels"]["alertname"].as_str().unwrap_or_default().to_owned(), a["annotations"].clone()))
        .collect()
}

/// Waits (bounded) until Prometheus has scraped the orchestrator: a counter it first
/// sees after a burst would not show the burst.
async fn until_scraped(p: &Prometheus) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = support::get(format!("{}/query?query=up", p.api)).await
            && let Ok(v) = r.json::<Value>().await
            && v["data"]["result"][0]["value"][1] == "1"
        {
            return;
        }
        assert!(Instant::now() < deadline, "prometheus never scraped the orchestrator");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls Prometheus (bounded) until `done` holds for the firing alerts.
async fn until_alerts(
    p: &Prometheus,
    what: &str,
    within: Duration,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + within;
    loop {
        let now = firing(p).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}; firing: {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const DRILLED: [&str; 4] =
    ["DispatchAuthFailureSpike", "DispatchCompletionRejectionSpike", "DispatchHandoffSlaMissed", "DispatchNodeLost"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fires_and_resolves_four_alerts_in_a_real_prometheus() {
    if !support::have_prometheus_tool("prometheus") {
        return;
    }
    let dir = support::tempdir();
    let s = Server::start_with(&dir.path().join("data"), &["--node-heartbeat-ms", "200"]);
    let prometheus = start_prometheus(dir.path(), s.url.trim_start_matches("http://"));
    until_scraped(&prometheus).await;
    let quiet = firing(&prometheus).await;
    assert!(quiet.iter().all(|(n, _)| !DRILLED.contains(&n.as_str())), "nothing is wrong yet: {quiet:?}");

    let ran = run_a_task(&s).await;
    let worker = lose_a_node(&s, dir.path()).await;
    refuse_logins(&s).await;
    refuse_completions(&s).await;
    miss_a_handoff_sla(&s).await;

    let fired = until_alerts(&prometheus, "all four drilled alerts firing", Duration::from_secs(60), |now| {
        DRILLED.iter().all(|d| now.iter().any(|(n, _)| n == d))
    })
    .await;
    let (_, auth) = fired.iter().find(|(n, _)| n == "DispatchAuthFailureSpike").unwrap();
    assert_eq!(auth["runbook_url"], "https://runbooks.test/dispatch/auth-failures.md");
    every_dashboard_panel_has_data(&prometheus, ran).await;

    // The fix of the lost node's runbook: remove it. The others clear as the windows pass.
    let (status, body) =
        s.send("POST", &format!("/v1/nodes/{worker}/remove"), &s.admin_token, None, Some(json!({}))).await;
    assert!(status < 300, "{body}");
    until_alerts(&prometheus, "every drilled alert resolved", Duration::from_secs(90), |now| {
        now.iter().all(|(n, _)| !DRILLED.contains(&n.as_str()))
    })
    .await;
}

/// Each query of the Grafana dashboard returns at least one series from this Prometheus
/// (polled, bounded: a rate needs two scrapes of a series that just appeared).
async fn every_dashboard_panel_has_data(p: &Prometheus, ran_a_task: bool) {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/dispatch.json")).unwrap()).unwrap();
    let panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row").collect();
    assert!(panels.len() >= 16, "{} panels", panels.len());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut empty = Vec::new();
        for panel in &panels {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let task_panel = expr.contains("dispatch_node_running_jobs");
                if !query_has_data(p, expr).await && (ran_a_task || !task_panel) {
                    empty.push(format!("{}: {expr}", panel["title"]));
                }
            }
        }
        if empty.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "panels without data:\n{}", empty.join("\n"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn query_has_data(p: &Prometheus, expr: &str) -> bool {
    let query = reqwest::Url::parse_with_params(&format!("{}/query", p.api), [("query", expr)]).unwrap();
    let body: Value = support::get(query).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"].as_array().is_some_and(|r| !r.is_empty())
}

/// Joins a worker process, then SIGKILLs it; returns its node id once it is LOST.
async fn lose_a_node(s: &Server, dir: &Path) -> String {
    let cluster = s.line_with("cluster:", Duration::from_secs(10));
    let cluster = cluster.split_whitespace().nth(1).unwrap().to_owned();
    let (status, token) =
        s.send("POST", "/v1/join-tokens", &s.admin_token, None, Some(json!({ "ttl_seconds": 300, "uses": 1 }))).await;
    assert_eq!(status, 201, "{token}");
    let (_, before) = s.send("GET", "/v1/nodes", &s.admin_token, None, None).await;
    let known: Vec<Value> = before["nodes"].as_array().unwrap().iter().map(|n| n["id"].clone()).collect();
    let wdir = dir.join("worker");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["agent", "--role", "worker", "--http-addr", "127.0.0.1:0", "--data-dir", wdir.to_str().unwrap()])
        .args(["--join", &cluster, "--token", token["token"].as_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("worker.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let joined = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("dispatch worker:")));
    assert!(joined.is_some(), "the worker never joined: {}", std::fs::read_to_string(dir.join("worker.log")).unwrap());
    let id =
        node_in_state(s, "the joined worker ACTIVE", |n| n["state"] == "ACTIVE" && !known.contains(&n["id"])).await;
    child.kill().unwrap();
    child.wait().unwrap();
    node_in_state(s, "the killed worker LOST", |n| n["state"] == "LOST" && n["id"] == id.as_str()).await
}

/// Polls the node list (bounded) until a node matches; returns its id.
async fn node_in_state(s: &Server, what: &str, matches: impl Fn(&Value) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, nodes) = s.send("GET", "/v1/nodes", &s.admin_token, None, None).await;
        if let Some(node) = nodes["nodes"].as_array().unwrap().iter().find(|n| matches(n)) {
            return node["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{what}: never happened: {nodes}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 30 logins with a wrong password (the limiter's refusals count too).
async fn refuse_logins(s: &Server) {
    s.add_person("mallory-target", "correct horse battery staple").await;
    for _ in 0..30 {
        let body = json!({ "username": "mallory-target", "password": "guess" });
        let (status, _) = s.send("POST", "/v1/auth/login", "", None, Some(body)).await;
        assert!(status == 401 || status == 429, "{status}");
    }
}

/// 15 completions of work that lacks its evidence.
async fn refuse_completions(s: &Server) {
    let crew = Crew::new(s).await;
    let id = support::dispatched_ticket(s, &crew).await;
    let path = format!("/v1/tickets/{id}/tech/check-in");
    assert_eq!(s.send("POST", &path, &crew.technician, Some(&support::key()), Some(json!({}))).await.0, 200);
    for _ in 0..15 {
        let body = json!({ "checklist": { "latch_tested": true } });
        let path = format!("/v1/tickets/{id}/tech/complete");
        let (status, body) = s.send("POST", &path, &crew.technician, Some(&support::key()), Some(body)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("CLOSEOUT_REQUIREMENTS_INCOMPLETE")), "{body}");
    }
}

/// A handoff with a one-second SLA that nobody answers in time; an operator decides it
/// once the lane has escalated.
async fn miss_a_handoff_sla(s: &Server) {
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let (status, body) =
        s.send("POST", "/v1/lanes", &agent, Some(&support::key()), Some(json!({ "lane_id": "drill" }))).await;
    assert_eq!(status, 201, "{body}");
    let checkpoint = json!({ "name": "c1", "state": { "step": 1 } });
    let (status, body) =
        s.send("POST", "/v1/lanes/drill/checkpoints", &agent, Some(&support::key()), Some(checkpoint)).await;
    assert_eq!(status, 200, "{body}");
    let envelope = json!({ "type": "handoff.requested", "version": "1.0", "id": "drill-1", "request_id": "drill-1",
        "lane_id": "drill", "occurred_at": "2026-12-05T10:00:00Z", "actor": { "kind": "agent", "id": "bot" },
        "data": { "checkpoint": "c1", "trigger_class": "policy", "reason": "drill", "context": {}, "queue": "ops",
                  "sla_seconds": 1, "deadline_seconds": 600, "timeout_action": "reject" } });
    let (status, body) = s.send("POST", "/v1/events", &agent, None, Some(envelope)).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let handoff = loop {
        let (_, lane) = s.send("GET", "/v1/lanes/drill", &s.admin_token, None, None).await;
        if lane["handoff"]["escalated"] == true {
            break lane["handoff"]["handoff_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the SLA was never missed: {lane}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let operator = json!({ "sub": "olga", "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": ["ops"], "ttl_seconds": 600 });
    let (_, minted) = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(operator)).await;
    let decision = json!({ "action": "approve", "reason": "checked in the drill" });
    let path = format!("/v1/handoffs/{handoff}/decision");
    let (status, body) =
        s.send("POST", &path, minted["token"].as_str().unwrap(), Some(&support::key()), Some(decision)).await;
    assert_eq!(status, 200, "{body}");
}

/// Runs one task on `up`'s own worker (in Docker), so the task panels have data.
/// False (said loudly) when no Docker Engine answers.
async fn run_a_task(s: &Server) -> bool {
    let engine = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    if !engine.is_ok_and(|o| o.status.success()) {
        eprintln!("\n!!! no Docker Engine answers: SKIPPING the task panels of the dashboard check !!!\n");
        return false;
    }
    let body = json!({ "command": ["echo", "drill"] });
    let (status, task) = s.send("POST", "/v1/tasks", &s.admin_token, Some(&support::key()), Some(body)).await;
    assert_eq!(status, 202, "{task}");
    let id = task["task_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, t) = s.send("GET", &format!("/v1/tasks/{id}"), &s.admin_token, None, None).await;
        if t["state"] == "SUCCEEDED" {
            return true;
        }
        assert!(Instant::now() < deadline && t["state"] != "FAILED", "the drill's task: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
