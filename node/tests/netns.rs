//! Real processes, real network faults. An orchestrator and three workers, each in its
//! own network namespace on one bridge, talk QUIC with mutual TLS over veth links.
//! iptables cuts one worker off while it runs a job and drops 5% of another's packets
//! for the whole run; the third is frozen with SIGSTOP while it runs a job and resumed,
//! then SIGKILLed while it runs another and restarted. Checked: each is seen UNREACHABLE
//! and comes back ACTIVE as the same node; every task ends SUCCEEDED (a job whose worker
//! is cut off stops itself before the lease runs out; one whose worker is frozen or dead
//! is stopped by its fence) and runs again elsewhere; Docker's event stream shows no task
//! ran to the end twice and no two attempts overlapped; the log's chains verify.
//!
//! `NETNS_KEEP=1` keeps the members' logs and data dirs (the path is printed) for a
//! post-mortem of a failed run.
//!
//! Needs root and `ip netns` (CI runs as root) and says SKIPPING loudly otherwise. This
//! kernel has no netem, so there is no added delay: loss is iptables' statistic match.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::docker::{DockerEvents, check_jobs_in_docker, tasks_can_run};
use support::member::Member;

/// Namespaces on one bridge: `<prefix>-hub` holds the bridge, each host has its own,
/// and the test (in the root namespace) has a link at `.1`.
struct Net {
    prefix: String,
    subnet: u32,
    namespaces: Vec<String>,
}

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

fn must(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Net {
    fn create(hosts: &[&str]) -> Option<Net> {
        let id = std::process::id() % 100_000;
        let mut net = Net { prefix: format!("dn{id}"), subnet: 20 + id % 200, namespaces: Vec::new() };
        let hub = net.ns("hub");
        if !run("ip", &["netns", "add", &hub]) {
            eprintln!(
                "\n!!! cannot create network namespaces (needs root and ip netns): SKIPPING the partition test !!!\n"
            );
            return None;
        }
        net.namespaces.push(hub.clone());
        must("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        must("ip", &["-n", &hub, "link", "set", "br0", "up"]);
        net.link(None, 1);
        for (i, host) in hosts.iter().enumerate() {
            let ns = net.ns(host);
            must("ip", &["netns", "add", &ns]);
            net.namespaces.push(ns);
            net.link(Some(host), 10 + i as u32);
        }
        Some(net)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn ip(&self, n: u32) -> String {
        format!("10.{}.0.{n}", self.subnet)
    }

    /// A veth from `host` (None: the root namespace) to the bridge, with address `.n`.
    fn link(&self, host: Option<&str>, n: u32) {
        let (near, far, hub) = (format!("{}a{n}", self.prefix), format!("{}b{n}", self.prefix), self.ns("hub"));
        must("ip", &["link", "add", &near, "type", "veth", "peer", "name", &far]);
        must("ip", &["link", "set", &far, "netns", &hub]);
        must("ip", &["-n", &hub, "link", "set", &far, "master", "br0"]);
        must("ip", &["-n", &hub, "link", "set", &far, "up"]);
        let address = format!("{}/24", self.ip(n));
        match host {
            Some(host) => {
                let ns = self.ns(host);
                must("ip", &["link", "set", &near, "netns", &ns]);
                must("ip", &["-n", &ns, "addr", "add", &address, "dev", &near]);
                must("ip", &["-n", &ns, "link", "set", &near, "up"]);
                must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            }
            None => {
                must("ip", &["addr", "add", &address, "dev", &near]);
                must("ip", &["link", "set", &near, "up"]);
            }
        }
    }

    fn iptables(&self, host: &str, rule: &[&str]) {
        let ns = self.ns(host);
        let mut args = vec!["netns", "exec", ns.as_str(), "iptables"];
        args.extend_from_slice(rule);
        must("ip", &args);
    }

    /// Drops everything between `host` and the address `.peer`, both ways.
    fn cut(&self, host: &str, peer: u32) {
        let peer = self.ip(peer);
        self.iptables(host, &["-I", "INPUT", "-s", &peer, "-j", "DROP"]);
        self.iptables(host, &["-I", "OUTPUT", "-d", &peer, "-j", "DROP"]);
    }

    fn heal(&self, host: &str) {
        self.iptables(host, &["-F", "INPUT"]);
        self.iptables(host, &["-F", "OUTPUT"]);
    }

    /// Drops `share` of `host`'s packets at random, both ways.
    fn lossy(&self, host: &str, share: f64) {
        for chain in ["INPUT", "OUTPUT"] {
            let p = share.to_string();
            self.iptables(
                host,
                &["-I", chain, "-m", "statistic", "--mode", "random", "--probability", &p, "-j", "DROP"],
            );
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its ends of the veths, and so their peers.
        for ns in &self.namespaces {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

struct Cluster {
    http: reqwest::Client,
    url: String,
    admin: String,
}

impl Cluster {
    async fn get(&self, path: &str) -> Value {
        let resp = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.admin).send().await.unwrap();
        resp.json().await.unwrap()
    }

    async fn node_state(&self, id: &str) -> String {
        self.get(&format!("/v1/nodes/{id}")).await["state"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (bounded) until node `id` is in one of `states`.
    async fn node_becomes(&self, id: &str, states: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.node_state(id).await;
            if states.contains(&state.as_str()) {
                return;
            }
            assert!(Instant::now() < deadline, "node {id} is {state}, not {states:?}, after 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn submit(&self, n: usize) -> String {
        let body = json!({ "command": ["sh", "-c", "sleep 3; echo ok"], "timeout_seconds": 60, "max_attempts": 5 });
        let resp = self
            .http
            .post(format!("{}/v1/tasks", self.url))
            .bearer_auth(&self.admin)
            .header("idempotency-key", format!("netns-task-{n}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        resp.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_owned()
    }

    /// Submits tasks `keys` and waits until one of them runs on `node` (no tasks, and no
    /// wait, without Docker).
    async fn jobs_running_on(&self, tasks: bool, node: &str, keys: std::ops::Range<usize>) -> Vec<String> {
        if !tasks {
            return Vec::new();
        }
        let ids = futures_util::future::join_all(keys.map(|n| self.submit(n))).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let running = self.get("/v1/tasks?state=RUNNING").await;
            let on_node =
                |t: &Value| t["attempts"].as_array().and_then(|a| a.last()).is_some_and(|a| a["node"] == node);
            if running["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| ids.contains(&t["id"].as_str().unwrap_or_default().to_owned()) && on_node(t))
            {
                return ids;
            }
            assert!(Instant::now() < deadline, "no job ran on {node}: {running}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until `check` holds for every task in `ids`.
    async fn tasks_all(&self, ids: &[String], what: &str, check: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut tasks = Vec::new();
            for id in ids {
                tasks.push(self.get(&format!("/v1/tasks/{id}")).await);
            }
            if tasks.iter().all(&check) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} not within 120 s: {tasks:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn worker(net: &Net, host: &str, n: u32, dir: &Path, join: Option<(&str, &str)>) -> Member {
    let http = format!("{}:9090", net.ip(n));
    let mut args = vec!["agent", "--role", "worker", "--http-addr", &http, "--data-dir", dir.to_str().unwrap()];
    if let Some((addr, token)) = join {
        args.extend(["--join", addr, "--token", token]);
    }
    // A restarted member writes a log of its own: the first one says what it did before.
    let first = dir.with_extension(format!("{}.log", std::process::id()));
    let log = if first.exists() { dir.with_extension(format!("{}.restarted.log", std::process::id())) } else { first };
    Member::spawn_in(Some(&net.ns(host)), &args, &log, |l| l.starts_with("dispatch worker:"))
}

fn succeeded(t: &Value) -> bool {
    t["state"] == "SUCCEEDED"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_loss_and_frozen_or_killed_workers_lose_nothing() {
    let Some(net) = Net::create(&["orch", "w1", "w2", "w3"]) else { return };
    let tasks = tasks_can_run("the partition test");
    let events = tasks.then(DockerEvents::watch);
    let root_dir = support::tempdir();
    let root = root_dir.path().to_owned();
    if std::env::var_os("NETNS_KEEP").is_some() {
        eprintln!("netns logs kept in {}", root.display());
        std::mem::forget(root_dir);
    }
    let odir = root.as_path().join("orchestrator");
    let (api, quic) = (format!("{}:8080", net.ip(10)), format!("{}:7443", net.ip(10)));
    let args = ["agent", "--role", "orchestrator", "--http-addr", &api, "--cluster-addr", &quic];
    let args = [&args[..], &["--node-heartbeat-ms", "300", "--data-dir", odir.to_str().unwrap()]].concat();
    let _orchestrator = Member::spawn_in(Some(&net.ns("orch")), &args, &root.as_path().join("orchestrator.log"), |l| {
        l.contains("cluster:")
    });
    let admin = std::fs::read_to_string(odir.join("admin-token")).unwrap().trim().to_owned();
    let c = Cluster { http: support::client_builder().build().unwrap(), url: format!("http://{api}"), admin };
    let token = Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["token", "create", "--ttl", "5m", "--uses", "3", "--server", &c.url, "--token", &c.admin])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let dirs: Vec<_> = ["w1", "w2", "w3"].iter().map(|w| root.as_path().join(w)).collect();
    let w1 = worker(&net, "w1", 11, &dirs[0], Some((&quic, &token)));
    let w2 = worker(&net, "w2", 12, &dirs[1], Some((&quic, &token)));
    let w3 = worker(&net, "w3", 13, &dirs[2], Some((&quic, &token)));
    let ids: Vec<String> = [&w1, &w2, &w3].iter().map(|w| w.after("dispatch worker: ")).collect();
    for id in &ids {
        c.node_becomes(id, &["ACTIVE"]).await;
    }
    net.lossy("w2", 0.05);

    // w1 is cut off while it runs a job: it stops the job before its lease runs out,
    // and the task runs again on another worker.
    let mut submitted = c.jobs_running_on(tasks, &ids[0], 0..6).await;
    net.cut("w1", 10);
    c.node_becomes(&ids[0], &["UNREACHABLE", "LOST"]).await;
    c.tasks_all(&submitted, "every task SUCCEEDED", succeeded).await;
    net.heal("w1");
    c.node_becomes(&ids[0], &["ACTIVE"]).await;

    // w3 is frozen while it runs a job: it cannot stop the job, its fence does.
    let frozen = c.jobs_running_on(tasks, &ids[2], 6..12).await;
    w3.signal("STOP");
    c.node_becomes(&ids[2], &["UNREACHABLE", "LOST"]).await;
    c.tasks_all(&frozen, "every task SUCCEEDED while w3 is frozen", succeeded).await;
    w3.signal("CONT");
    c.node_becomes(&ids[2], &["ACTIVE"]).await;

    // w3 is killed while it runs a job, and started again without a token.
    let killed = c.jobs_running_on(tasks, &ids[2], 12..18).await;
    w3.signal("KILL");
    drop(w3);
    c.node_becomes(&ids[2], &["UNREACHABLE", "LOST"]).await;
    c.tasks_all(&killed, "every task SUCCEEDED after w3 was killed", succeeded).await;
    let w3 = worker(&net, "w3", 13, &dirs[2], None);
    assert_eq!(w3.after("dispatch worker: "), ids[2], "the same node after a restart");
    c.node_becomes(&ids[2], &["ACTIVE"]).await;
    submitted.extend(frozen.into_iter().chain(killed));

    // After it all, the cluster still runs work.
    if tasks {
        let more = futures_util::future::join_all((18..21).map(|n| c.submit(n))).await;
        c.tasks_all(&more, "tasks after the faults SUCCEEDED", succeeded).await;
        submitted.extend(more);
    }
    let nodes = c.get("/v1/nodes").await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 3, "three nodes, never a fourth: {nodes}");
    let audit = c.get("/v1/admin/audit/verify").await;
    assert_eq!(audit["ok"], true, "{audit}");
    let jobs = match events {
        Some(events) => check_jobs_in_docker(&submitted, &events.collect()),
        None => 0,
    };
    println!(
        "{}",
        json!({ "tasks": submitted.len(), "jobs": jobs, "nodes": 3, "faults": ["cut", "loss 5%", "SIGSTOP", "SIGKILL"] })
    );
    drop((w1, w2, w3));
}
