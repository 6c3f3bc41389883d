//! Load on the cluster side of a running orchestrator: joins `--nodes` simulated
//! workers over real QUIC with their own keys (join latency), connects each with
//! its certificate (mutual TLS), answers configuration pushes, heartbeats every
//! `--heartbeat-ms` from all of them for `--duration-secs`, and measures request
//! round trips. Prints one JSON report; with `--pid`, the orchestrator's CPU use
//! over the heartbeat phase (from /proc, user + system).

use dispatch_node::cluster;
use dispatch_node::cluster::certs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use cluster::proto::{Capabilities, ConfigAck, ConfigOutcome};
use cluster::proto::{Push, PushReply, Request, Response};
use cluster::{token, transport, wire};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Joins N simulated workers over QUIC and heartbeats them; reports join time, RTT and CPU")]
struct Args {
    /// Orchestrator URL (HTTP API, to create the token).
    #[arg(long)]
    server: String,
    /// File holding an admin token.
    #[arg(long)]
    admin_token_file: PathBuf,
    /// Simulated worker nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Heartbeat interval of every node (match the orchestrator's --node-heartbeat-ms).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Length of the heartbeat phase.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 16)]
    join_concurrency: usize,
    /// Sequential pings on one connection for the round-trip figure.
    #[arg(long, default_value_t = 5000)]
    pings: usize,
    /// Orchestrator process id, to report its CPU use.
    #[arg(long)]
    pid: Option<u32>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({ "count": ms.len(), "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99), "max_ms": ms.last() })
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).context("unreadable /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields.get(11).context("utime")?.parse::<f64>()? + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

struct Joined {
    cert: Vec<u8>,
    ca: Vec<u8>,
    key: certs::NodeKey,
}

async fn join(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    join_token: &str,
    pin: &str,
    n: usize,
) -> anyhow::Result<(Joined, f64)> {
    let key = certs::NodeKey::generate(Default::default())?;
    let started = Instant::now();
    let conn = transport::connect(endpoint, addr, certs::join_client_config(pin)?).await?;
    let capabilities = Capabilities { hostname: format!("sim-{n}"), cores: 1, ..Capabilities::default() };
    let request = Request::Join { token: join_token.to_owned(), public_key: key.public_raw(), capabilities };
    let answer = transport::call(&conn, &request).await?;
    let took = started.elapsed().as_secs_f64() * 1e3;
    conn.close(0u32.into(), b"joined");
    match answer {
        Response::Joined(b) => Ok((Joined { cert: b.cert_der, ca: b.ca_der, key }, took)),
        other => bail!("join refused: {other:?}"),
    }
}

/// What every simulated node shares in the heartbeat phase.
#[derive(Clone)]
struct Phase {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    every: Duration,
    until: Instant,
    rtts: Arc<Mutex<Vec<f64>>>,
    failures: Arc<AtomicU64>,
}

/// One simulated node: hello, answer pushes, heartbeat until the phase ends.
async fn run_node(phase: Phase, joined: Joined, n: usize) -> anyhow::Result<()> {
    let Phase { endpoint, addr, every, until, rtts, failures } = phase;
    // Spread connections and first beats over one interval: steady load, not a burst.
    tokio::time::sleep(every.mul_f64((n % 1000) as f64 / 1000.0)).await;
    let tls = certs::node_client_config(&joined.ca, &joined.cert, &joined.key)?;
    let conn = transport::connect(&endpoint, addr, tls).await?;
    let capabilities = Capabilities { hostname: format!("sim-{n}"), cores: 1, ..Capabilities::default() };
    transport::call(&conn, &Request::Hello { capabilities }).await?;
    let pushes = conn.clone();
    tokio::spawn(async move {
        while let Ok((mut send, mut recv)) = pushes.accept_bi().await {
            if let Ok(Push::ApplyConfig { version, .. }) = wire::read::<Push>(&mut recv).await {
                let _ = wire::write(
                    &mut send,
                    &PushReply::ConfigAck(ConfigAck { version, outcome: ConfigOutcome::Applied }),
                )
                .await;
                let _ = send.finish();
            }
        }
    });
    let mut ticker = tokio::time::interval(every);
    let mut mine = Vec::new();
    while Instant::now() < until {
        ticker.tick().await;
        let t = Instant::now();
        match transport::call(&conn, &Request::Heartbeat { running: vec![] }).await {
            Ok(Response::HeartbeatOk) => mine.push(t.elapsed().as_secs_f64() * 1e3),
            _ => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    rtts.lock().await.extend(mine);
    conn.close(0u32.into(), b"done");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest has no default crypto provider in this workspace: plain-HTTP clients still need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let admin = std::fs::read_to_string(&args.admin_token_file).context("reading the admin token")?.trim().to_owned();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/join-tokens", args.server))
        .bearer_auth(&admin)
        .json(&json!({ "uses": args.nodes + 1, "ttl_seconds": 3600 }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let join_token = created["token"].as_str().context("no token in the answer")?.to_owned();
    let claims = token::read(&join_token)?;
    let addr: SocketAddr = claims.orchestrators.first().context("no address in the token")?.parse()?;
    let endpoint = transport::endpoint(transport::udp_socket("127.0.0.1:0".parse()?)?, None, None)?;

    // Joins: latency of each (a handshake without client certificate + the join request,
    // which is two fsynced appends on the orchestrator).
    let started = Instant::now();
    let (joined, join_ms) = join_all(&args, &endpoint, addr, &join_token, &claims.ca_sha256).await?;
    let join_wall = started.elapsed().as_secs_f64();

    // Heartbeats from every node at once; CPU of the orchestrator over the phase.
    let every = Duration::from_millis(args.heartbeat_ms);
    let phase = Duration::from_secs(args.duration_secs);
    let rtts = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + phase;
    let shared =
        Phase { endpoint: endpoint.clone(), addr, every, until, rtts: rtts.clone(), failures: failures.clone() };
    let cpu_before = args.pid.map(cpu_seconds).transpose()?;
    let phase_started = Instant::now();
    // Steady state: every node connected (they spread over the first interval) and
    // only heartbeats left — the handshakes and hellos are not in this figure.
    let (from, to) = (phase_started + every + Duration::from_secs(1), until - Duration::from_secs(1));
    let steady = args.pid.filter(|_| to > from).map(|pid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            let (before, at) = (cpu_seconds(pid).ok()?, Instant::now());
            tokio::time::sleep_until(to.into()).await;
            Some((cpu_seconds(pid).ok()? - before) / at.elapsed().as_secs_f64())
        })
    });
    let mut tasks = Vec::new();
    for (i, j) in joined.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_node(shared.clone(), j, i)));
    }
    let node_errors = await_nodes(tasks).await;
    let phase_secs = phase_started.elapsed().as_secs_f64();
    let cpu = match (args.pid, cpu_before) {
        (Some(pid), Some(before)) => Some((cpu_seconds(pid)? - before) / phase_secs),
        _ => None,
    };
    let steady_cpu = match steady {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    let heartbeats = rtts.lock().await.clone();
    let beats = heartbeats.len();

    // Round trips on one quiet connection (a fresh node joined for it).
    let (probe, _) = join(&endpoint, addr, &join_token, &claims.ca_sha256, args.nodes).await?;
    let ping_ms = pings(&endpoint, addr, &probe, args.pings).await?;

    let report = json!({
        "nodes": args.nodes,
        "join": summary(join_ms),
        "join_wall_seconds": join_wall,
        "heartbeat_interval_ms": args.heartbeat_ms,
        "heartbeats": beats,
        "heartbeats_per_second": beats as f64 / phase_secs,
        "heartbeat_failures": failures.load(Ordering::Relaxed),
        "node_errors": node_errors,
        "heartbeat_rtt": summary(heartbeats),
        "ping_rtt": summary(ping_ms),
        "orchestrator_cpu_cores": cpu, "orchestrator_cpu_cores_steady": steady_cpu,
    });
    println!("{report}");
    Ok(())
}

/// Joins `args.nodes` nodes, `args.join_concurrency` at a time: each node and its join latency.
async fn join_all(
    args: &Args,
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    join_token: &str,
    pin: &str,
) -> anyhow::Result<(Vec<Joined>, Vec<f64>)> {
    let mut joined = Vec::with_capacity(args.nodes);
    let mut join_ms = Vec::with_capacity(args.nodes);
    let mut in_flight = tokio::task::JoinSet::new();
    for i in 0..args.nodes {
        if in_flight.len() >= args.join_concurrency
            && let Some(done) = in_flight.join_next().await
        {
            let (j, ms) = done??;
            joined.push(j);
            join_ms.push(ms);
        }
        let (endpoint, join_token, pin) = (endpoint.clone(), join_token.to_owned(), pin.to_owned());
        in_flight.spawn(async move { join(&endpoint, addr, &join_token, &pin, i).await });
    }
    while let Some(done) = in_flight.join_next().await {
        let (j, ms) = done??;
        joined.push(j);
        join_ms.push(ms);
    }
    Ok((joined, join_ms))
}

/// Round trips (ms) of `n` pings on one authenticated connection of `node`.
async fn pings(endpoint: &quinn::Endpoint, addr: SocketAddr, node: &Joined, n: usize) -> anyhow::Result<Vec<f64>> {
    let conn = transport::connect(endpoint, addr, certs::node_client_config(&node.ca, &node.cert, &node.key)?).await?;
    transport::call(&conn, &Request::Hello { capabilities: Capabilities::default() }).await?;
    let mut ping_ms = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        transport::call(&conn, &Request::Ping { sent_ns: i as u64 }).await?;
        ping_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ping_ms)
}

/// Waits for every node's heartbeat loop; how many of them failed.
async fn await_nodes(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>) -> usize {
    let mut node_errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                node_errors += 1;
                eprintln!("node failed: {e}");
            }
            Err(e) => {
                node_errors += 1;
                eprintln!("node task failed: {e}");
            }
        }
    }
    node_errors
}
