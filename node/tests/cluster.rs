//! Three real processes on loopback: an orchestrator and two workers joined with a
//! bootstrap token, talking QUIC with mutual TLS; configuration acknowledged; drain
//! and remove; a forged token and a certificate-less client refused; a restart that
//! needs no token; and a real Prometheus scraping all three members.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use support::member::Member;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use cluster::proto::{Request, Response, codes};
use cluster::{token, transport};
use serde_json::Value;

fn cli(url: &str, admin: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispatch")).args(args).args(["--server", url, "--token", admin]).output().unwrap()
}

fn cli_ok(url: &str, admin: &str, args: &[&str]) -> String {
    let out = cli(url, admin, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn worker(dir: &Path, extra: &[&str]) -> Member {
    let mut args = vec!["agent", "--role", "worker", "--http-addr", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Member::spawn(&args, &dir.with_extension("stderr.log"), |l| l.starts_with("dispatch worker:"))
}

/// Polls `check` until it returns Some (bounded): the processes change state on their own.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn nodes(http: &reqwest::Client, url: &str, admin: &str) -> Vec<Value> {
    let body: Value =
        http.get(format!("{url}/v1/nodes")).bearer_auth(admin).send().await.unwrap().json().await.unwrap();
    body["nodes"].as_array().cloned().unwrap_or_default()
}

fn node<'a>(nodes: &'a [Value], id: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| n["id"] == id)
}

#[tokio::test]
async fn an_orchestrator_and_two_workers_join_run_config_and_are_scraped_by_prometheus() {
    let root = support::tempdir();
    let odir = root.path().join("orchestrator");
    let orchestrator = Member::spawn(
        &[
            "agent",
            "--role",
            "orchestrator",
            "--http-addr",
            "127.0.0.1:0",
            "--cluster-addr",
            "127.0.0.1:0",
            "--node-heartbeat-ms",
            "200",
            "--data-dir",
            odir.to_str().unwrap(),
        ],
        &root.path().join("orchestrator.stderr.log"),
        |l| l.contains("cluster:"),
    );
    let url = orchestrator.after("listening on ");
    let cluster_addr = orchestrator.after("cluster:");
    let admin = std::fs::read_to_string(odir.join("admin-token")).unwrap().trim().to_owned();
    let http = support::client_builder().pool_max_idle_per_host(0).build().unwrap();

    // A two-use token, from the CLI.
    let join_token =
        cli_ok(&url, &admin, &["token", "create", "--ttl", "5m", "--uses", "2", "--label", "zone=a"]).trim().to_owned();
    let claims = token::read(&join_token).unwrap();
    assert_eq!(claims.orchestrators, vec![cluster_addr.clone()]);

    let (w1dir, w2dir) = (root.path().join("w1"), root.path().join("w2"));
    let started = Instant::now();
    let w1 = worker(&w1dir, &["--join", &cluster_addr, "--token", &join_token]);
    let w2 = worker(&w2dir, &["--join", &cluster_addr, "--token", &join_token]);
    eprintln!("two workers joined in {:?} (process start included)", started.elapsed());

    // Both ACTIVE, configuration v1 acknowledged as applied, each worker ready.
    let all = eventually("two active nodes with config acknowledged", async || {
        let all = nodes(&http, &url, &admin).await;
        let ok = all.len() == 2
            && all.iter().all(|n| {
                n["state"] == "ACTIVE" && n["config_ack"]["version"] == 1 && n["config_ack"]["outcome"] == "applied"
            });
        ok.then_some(all)
    })
    .await;
    assert!(all.iter().all(|n| n["token_labels"]["zone"] == "a"), "token labels reach the nodes: {all:?}");
    assert!(all.iter().all(|n| n["capabilities"]["cores"].as_u64().unwrap_or(0) >= 1));
    let w1_http = format!("http://{}", w1.after("metrics on http://"));
    let w2_http = format!("http://{}", w2.after("metrics on http://"));
    for w in [&w1_http, &w2_http] {
        let ready = eventually("worker ready", async || {
            let r = http.get(format!("{w}/ready")).send().await.ok()?;
            (r.status() == 200).then_some(())
        });
        ready.await;
    }

    // A configuration change reaches the node and is acknowledged.
    let w1_id = w1.after("dispatch worker: ");
    let w2_id = w2.after("dispatch worker: ");
    cli_ok(&url, &admin, &["node", "config", "set", &w1_id, "--max-concurrent-jobs", "5"]);
    eventually("config v2 acknowledged", async || {
        let all = nodes(&http, &url, &admin).await;
        let n = node(&all, &w1_id)?;
        (n["config_version"] == 2 && n["config_ack"]["version"] == 2).then_some(())
    })
    .await;
    let shown: Value = serde_json::from_str(&cli_ok(&url, &admin, &["node", "show", &w1_id, "--json"])).unwrap();
    assert_eq!(shown["config"]["max_concurrent_jobs"], 5);

    scrape_with_prometheus(root.path(), &[&url, &w1_http, &w2_http]).await;

    // The token is used up now; a forged one is refused with its reason.
    let forged = token::sign(&claims, b"not the orchestrator's key");
    for (t, code) in [(forged.as_str(), "TOKEN_FORGED"), (join_token.as_str(), "TOKEN_USED_UP")] {
        let dir = root.path().join(format!("refused-{code}"));
        let out = Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args([
                "agent",
                "--role",
                "worker",
                "--http-addr",
                "127.0.0.1:0",
                "--join",
                &cluster_addr,
                "--token",
                t,
                "--data-dir",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(code), "expected {code}: {stderr}");
    }

    // No client certificate: only a join is possible. A certificate from another CA: no handshake.
    let endpoint =
        transport::endpoint(transport::udp_socket("127.0.0.1:0".parse().unwrap()).unwrap(), None, None).unwrap();
    let addr = cluster_addr.parse().unwrap();
    let conn =
        transport::connect(&endpoint, addr, certs::join_client_config(&claims.ca_sha256).unwrap()).await.unwrap();
    match transport::call(&conn, &Request::Heartbeat { running: vec![] }).await.unwrap() {
        Response::Refused { code, .. } => assert_eq!(code, codes::CERT_REQUIRED),
        other => panic!("expected refusal, got {other:?}"),
    }
    let stranger_ca = certs::ClusterCa::generate(SystemTime::now(), Default::default()).unwrap();
    let key = certs::NodeKey::generate(Default::default()).unwrap();
    let cert = stranger_ca.issue_node(&w1_id, &key.public_raw(), SystemTime::now(), Duration::from_secs(600)).unwrap();
    let real_ca = std::fs::read(odir.join("ca/ca.crt.der")).unwrap();
    let tls = certs::node_client_config(&real_ca, &cert.der, &key).unwrap();
    let refused = match transport::connect(&endpoint, addr, tls).await {
        Err(e) => Some(e.to_string()),
        Ok(conn) => transport::call(&conn, &Request::Heartbeat { running: vec![] }).await.err().map(|e| e.to_string()),
    };
    assert!(refused.is_some(), "a certificate from another CA must not get an answer");

    // Drain, then remove: the removed worker is told and stops for good.
    let drained: Value = serde_json::from_str(&cli_ok(&url, &admin, &["node", "drain", &w2_id, "--json"])).unwrap();
    assert_eq!(drained["state"], "DRAINING");
    let removed: Value = serde_json::from_str(&cli_ok(&url, &admin, &["node", "remove", &w2_id, "--json"])).unwrap();
    assert_eq!(removed["state"], "REMOVED");
    let (status, log) = w2.exited();
    assert!(!status.success() && log.contains(codes::NODE_REMOVED), "{status}: {log}");

    // A restarted worker needs only its data dir: same node, no second join.
    w1.stop();
    let w1 = worker(&w1dir, &[]);
    assert_eq!(w1.after("dispatch worker: "), w1_id);
    eventually("restarted worker active again", async || {
        let all = nodes(&http, &url, &admin).await;
        (all.len() == 2 && node(&all, &w1_id)?["state"] == "ACTIVE").then_some(())
    })
    .await;
    let list = cli_ok(&url, &admin, &["node", "list"]);
    assert!(list.contains(&w1_id) && list.contains("REMOVED"), "{list}");

    w1.stop();
    orchestrator.stop();
}

/// Runs Debian's Prometheus against the members' `/metrics` until every target is
/// `up == 1`, and checks each exposition with `promtool check metrics`.
async fn scrape_with_prometheus(dir: &Path, members: &[&str]) {
    if !support::have_prometheus_tool("prometheus") || !support::have_prometheus_tool("promtool") {
        return;
    }
    for m in members {
        let text = support::get(format!("{m}/metrics")).await.unwrap().text().await.unwrap();
        support::promtool_check(&text, m);
    }
    let targets: Vec<String> = members.iter().map(|m| format!("'{}'", m.trim_start_matches("http://"))).collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dispatch\n    static_configs:\n      - targets: [{}]\n", targets.join(", ")),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=up");
    let result = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(r) = support::get(&query).await
                && let Ok(v) = r.json::<Value>().await
            {
                let series = v["data"]["result"].as_array().cloned().unwrap_or_default();
                if series.len() == members.len() && series.iter().all(|s| s["value"][1] == "1") {
                    return series;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let series = result.unwrap_or_else(|_| {
        panic!("not every target up:\n{}", std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default())
    });
    eprintln!(
        "prometheus: {} targets up: {:?}",
        series.len(),
        series.iter().map(|s| s["metric"]["instance"].clone()).collect::<Vec<_>>()
    );
}
