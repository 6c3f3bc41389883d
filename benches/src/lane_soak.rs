//! Soak of lane intake against a running orchestrator: `--lanes` lanes, `--concurrency`
//! clients recording checkpoints back to back (each durable before its answer), 2% of
//! steps raising a handoff through the v1 envelope that an operator decides at once.
//! Reports sustained events/s, intake latency p50/p99 per window, and the server's
//! resident memory (from /proc, with `--pid`) over the run, as JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Sustained lane events/s with p99 intake latency and server memory over time")]
struct Args {
    #[arg(long)]
    server: String,
    #[arg(long)]
    admin_token_file: PathBuf,
    #[arg(long, default_value_t = 200)]
    lanes: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Orchestrator process id, to sample its resident memory.
    #[arg(long)]
    pid: Option<u32>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN)
}

async fn mint(http: &reqwest::Client, server: &str, admin: &str, sub: &str, role: &str) -> anyhow::Result<String> {
    let body =
        json!({ "sub": sub, "role": role, "accounts": ["*"], "sites": ["*"], "queues": ["*"], "ttl_seconds": 7200 });
    let v: Value = http
        .post(format!("{server}/v1/admin/tokens"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    v["token"].as_str().map(str::to_owned).context("no token")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest has no default crypto provider in this workspace: plain-HTTP clients still need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let admin = std::fs::read_to_string(&args.admin_token_file)?.trim().to_owned();
    let http = reqwest::Client::new();
    let agent = mint(&http, &args.server, &admin, "soak-agent", "agent").await?;
    let operator = mint(&http, &args.server, &admin, "soak-operator", "operator").await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    create_lanes(&http, &args.server, &agent, &run, args.lanes).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let window: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..args.concurrency {
        let (http, server, agent, operator) = (http.clone(), args.server.clone(), agent.clone(), operator.clone());
        let (stop, events, errors, window, run, lanes) =
            (stop.clone(), events.clone(), errors.clone(), window.clone(), run.clone(), args.lanes);
        clients.push(tokio::spawn(async move {
            let mut step = 0u64;
            while !stop.load(Ordering::Relaxed) {
                step += 1;
                let t = Instant::now();
                let ok = one_event(
                    &http,
                    &server,
                    (&agent, &operator),
                    &format!("soak-{run}-{}", (c + step as usize * lane_stride(lanes)) % lanes),
                    c,
                    step,
                )
                .await;
                if ok {
                    events.fetch_add(1, Ordering::Relaxed);
                    window.lock().await.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    let mut windows = Vec::new();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(args.duration_secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut lat = std::mem::take(&mut *window.lock().await);
        lat.sort_by(f64::total_cmp);
        let now = events.load(Ordering::Relaxed);
        windows.push(json!({ "at_s": started.elapsed().as_secs(), "events_per_s": (now - last) as f64 / 5.0,
            "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "rss_mib": args.pid.and_then(rss_kib).map(|k| k as f64 / 1024.0) }));
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let report = json!({
        "lanes": args.lanes, "concurrency": args.concurrency, "duration_s": secs,
        "events": events.load(Ordering::Relaxed), "errors": errors.load(Ordering::Relaxed),
        "events_per_s": events.load(Ordering::Relaxed) as f64 / secs, "windows": windows,
    });
    println!("{report}");
    Ok(())
}

/// Spreads each client's steps over the lanes.
fn lane_stride(lanes: usize) -> usize {
    (lanes / 7).max(1)
}

/// One lane event: a checkpoint, or (every 50th step) a handoff that an operator
/// decides at once. Answers whether it was accepted.
async fn one_event(
    http: &reqwest::Client,
    server: &str,
    (agent, operator): (&str, &str),
    id: &str,
    c: usize,
    step: u64,
) -> bool {
    let handoff = step.is_multiple_of(50);
    if handoff {
        let request_id = format!("{id}-{c}-{step}");
        let envelope = json!({ "type": "handoff.requested", "version": "1.0", "id": request_id, "request_id": request_id,
            "lane_id": id, "occurred_at": "2026-11-21T10:00:00Z", "actor": { "kind": "agent", "id": "soak" },
            "data": { "checkpoint": "step-0", "trigger_class": "soak", "reason": "r", "queue": "q", "sla_seconds": 600, "deadline_seconds": 600 } });
        let r = http.post(format!("{server}/v1/events")).bearer_auth(agent).json(&envelope).send().await;
        match r {
            Ok(r) if r.status().as_u16() == 202 => {
                let lane: Value = match http.get(format!("{server}/v1/lanes/{id}")).bearer_auth(agent).send().await {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                let h = lane["handoff"]["handoff_id"].as_str().unwrap_or_default().to_owned();
                http.post(format!("{server}/v1/handoffs/{h}/decision"))
                    .bearer_auth(operator)
                    .header("idempotency-key", format!("{h}-d"))
                    .json(&json!({ "action": "approve", "reason": "ok" }))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
            // Another client's handoff on this lane is still open: a refusal, not an error.
            Ok(r) if r.status().as_u16() == 409 => true,
            _ => false,
        }
    } else {
        let body = json!({ "name": format!("step-{}", step % 8), "state": { "n": step } });
        http.post(format!("{server}/v1/lanes/{id}/checkpoints"))
            .bearer_auth(agent)
            .header("idempotency-key", format!("{id}-{c}-{step}"))
            .json(&body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// The soak's lanes, each with the checkpoint its handoffs name.
async fn create_lanes(
    http: &reqwest::Client,
    server: &str,
    agent: &str,
    run: &str,
    lanes: usize,
) -> anyhow::Result<()> {
    for lane in 0..lanes {
        let id = format!("soak-{run}-{lane}");
        http.post(format!("{}/v1/lanes", server))
            .bearer_auth(agent)
            .header("idempotency-key", format!("{id}-create"))
            .json(&json!({ "lane_id": id }))
            .send()
            .await?
            .error_for_status()?;
        http.post(format!("{}/v1/lanes/{id}/checkpoints", server))
            .bearer_auth(agent)
            .header("idempotency-key", format!("{id}-c0"))
            .json(&json!({ "name": "step-0", "state": {} }))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(())
}
