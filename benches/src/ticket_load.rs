//! Drives full ticket lifecycles over HTTP against a running orchestrator at a
//! given concurrency and prints durable commands/s and latency percentiles as JSON.
//!
//! Every command is acknowledged only after its group commit is fsynced, so the
//! rate reported is a durable rate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Full ticket lifecycles over HTTP; reports durable commands/s and p50/p99 latency")]
struct Args {
    /// Orchestrator URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// File holding an admin token (as written by `dispatch up`).
    #[arg(long, default_value = "./dispatch-data/admin-token")]
    admin_token_file: PathBuf,
    /// Concurrent clients, each running lifecycles back to back.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Orchestrator process id: adds the bytes it wrote per commit (from /proc).
    #[arg(long)]
    pid: Option<u32>,
    /// Only create tickets (one command each): fills the log and wakes one actor per
    /// command, for the memory and big-log runs.
    #[arg(long)]
    creates_only: bool,
    /// Stop after this many lifecycles (or creates) in all, even before the duration.
    #[arg(long)]
    limit: Option<u64>,
}

/// The log writer's counters, read from the server's metrics and /proc around the run.
#[derive(Default, Clone, Copy)]
struct WriterCounters {
    commits: f64,
    appends: f64,
    commit_seconds: f64,
    written_bytes: Option<f64>,
}

async fn writer_counters(api: &Api, pid: Option<u32>) -> anyhow::Result<WriterCounters> {
    let text = api.http.get(format!("{}/metrics", api.base)).send().await?.text().await?;
    let value = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let written_bytes = pid.and_then(|pid| {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        io.lines().find_map(|l| l.strip_prefix("write_bytes:")?.trim().parse().ok())
    });
    Ok(WriterCounters {
        commits: value("dispatch_log_commits_total"),
        appends: value("dispatch_log_commit_batch_size_sum"),
        commit_seconds: value("dispatch_log_commit_duration_seconds_sum"),
        written_bytes,
    })
}

/// What the single log writer did over the run: the figures that say whether it is the
/// ceiling (busy near 1) and what one commit costs.
fn writer_report(before: WriterCounters, after: WriterCounters, elapsed: f64) -> Value {
    let commits = (after.commits - before.commits).max(1.0);
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let written = after.written_bytes.zip(before.written_bytes).map(|(a, b)| round((a - b) / commits / 1024.0));
    json!({
        "commits_per_second": round(commits / elapsed),
        "appends_per_commit": round((after.appends - before.appends) / commits),
        "ms_per_commit": round((after.commit_seconds - before.commit_seconds) / commits * 1e3),
        "busy": round((after.commit_seconds - before.commit_seconds) / elapsed),
        "kib_written_per_commit": written,
    })
}

struct Tokens {
    dispatcher: String,
    manager: String,
    qa: String,
    billing: String,
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, token: &str, path: &str, body: Value, key: bool) -> anyhow::Result<Value> {
        let mut req = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).json(&body);
        if key {
            req = req.header("idempotency-key", uuid::Uuid::new_v4().to_string());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }

    async fn mint(&self, admin: &str, sub: &str, role: &str) -> anyhow::Result<String> {
        let body = json!({ "sub": sub, "role": role, "accounts": ["*"], "sites": ["*"], "ttl_seconds": 3600 });
        let v = self.post(admin, "/v1/admin/tokens", body, false).await?;
        Ok(v["token"].as_str().context("token in answer")?.to_owned())
    }
}

/// One lifecycle: 14 commands, each timed (only the first with `creates_only`).
async fn lifecycle(
    api: &Api,
    t: &Tokens,
    (tech, creates_only): (&str, bool),
    uris: &[String; 3],
    latencies: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let window = json!({ "start": "2026-11-23T09:00:00Z", "end": "2026-11-23T11:00:00Z" });
    let mut timed = async |token: &str, path: String, body: Value| -> anyhow::Result<Value> {
        let started = Instant::now();
        let v = api.post(token, &path, body, true).await?;
        latencies.push(started.elapsed());
        Ok(v)
    };
    let created = timed(&t.dispatcher, "/v1/tickets".into(),
        json!({ "account_id": "bench", "site_id": "bench-site", "incident_type": "DOOR_WONT_LATCH", "summary": "bench" })).await?;
    let id = created["id"].as_str().context("ticket id")?.to_owned();
    if creates_only {
        return Ok(());
    }
    let p = |s: &str| format!("/v1/tickets/{id}/{s}");
    timed(&t.dispatcher, p("triage"), json!({ "workflow_outcome": "READY_TO_SCHEDULE" })).await?;
    timed(&t.dispatcher, p("schedule/propose"), json!({ "windows": [window] })).await?;
    timed(&t.dispatcher, p("schedule/confirm"), json!({ "window": window })).await?;
    timed(&t.dispatcher, p("assignment/dispatch"), json!({ "technician_id": TECH_SUB.with(|s| s.clone()) })).await?;
    timed(tech, p("tech/check-in"), json!({})).await?;
    for (key, kind, uri) in [
        ("photo_before", "photo", &uris[0]),
        ("photo_after", "photo", &uris[1]),
        ("customer_signature", "signature", &uris[2]),
    ] {
        timed(tech, p("evidence"), json!({ "kind": kind, "uri": uri, "evidence_key": key })).await?;
    }
    timed(tech, p("tech/complete"), json!({ "checklist": { "latch_tested": true, "strike_aligned": true } })).await?;
    timed(&t.qa, p("qa/verify"), json!({})).await?;
    timed(&t.billing, p("billing/generate-invoice"), json!({ "amount_cents": 10000, "currency": "USD" })).await?;
    timed(&t.manager, p("close"), json!({})).await?;
    Ok(())
}

tokio::task_local! {
    static TECH_SUB: String;
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest has no default crypto provider in this workspace: plain-HTTP clients still need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let admin = std::fs::read_to_string(&args.admin_token_file)
        .with_context(|| format!("reading {}", args.admin_token_file.display()))?
        .trim()
        .to_owned();
    let api = Api {
        http: reqwest::Client::builder().pool_max_idle_per_host(args.concurrency.max(1)).build()?,
        base: args.server.trim_end_matches('/').to_owned(),
    };
    let tokens = Arc::new(Tokens {
        dispatcher: api.mint(&admin, "bench-dispatcher", "dispatcher").await?,
        manager: api.mint(&admin, "bench-manager", "manager").await?,
        qa: api.mint(&admin, "bench-qa", "qa").await?,
        billing: api.mint(&admin, "bench-billing", "billing").await?,
    });
    let uris = Arc::new(evidence(&api, &admin).await?);

    let counters_before = writer_counters(&api, args.pid).await?;
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let started = Instant::now();
    let budget = Arc::new(AtomicU64::new(args.limit.unwrap_or(u64::MAX)));
    let mut workers = Vec::new();
    for i in 0..args.concurrency {
        let sub = format!("bench-tech-{i}");
        let tech = api.mint(&admin, &sub, "technician").await?;
        let client =
            Client { api: api.clone(), tokens: tokens.clone(), uris: uris.clone(), tech, budget: budget.clone() };
        workers.push(tokio::spawn(TECH_SUB.scope(sub, client.run(deadline, args.creates_only))));
    }
    let mut all = Vec::new();
    let (mut lifecycles, mut errors) = (0, 0);
    for w in workers {
        let (l, n, e) = w.await?;
        all.extend(l);
        lifecycles += n;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut line = report(&args, elapsed, all, lifecycles, errors);
    line["writer"] = writer_report(counters_before, writer_counters(&api, args.pid).await?, elapsed);
    println!("{line}");
    Ok(())
}

/// One concurrent client: its technician token, and the lifecycles left to all clients.
struct Client {
    api: Api,
    tokens: Arc<Tokens>,
    uris: Arc<[String; 3]>,
    tech: String,
    budget: Arc<AtomicU64>,
}

impl Client {
    /// Lifecycles back to back until the deadline or the shared budget runs out: each
    /// command's latency, the lifecycles done and those that failed.
    async fn run(self, deadline: Instant, creates_only: bool) -> (Vec<Duration>, u64, u64) {
        let mut latencies = Vec::new();
        let (mut lifecycles, mut errors) = (0u64, 0u64);
        let take = || self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
        while Instant::now() < deadline && take() {
            match lifecycle(&self.api, &self.tokens, (&self.tech, creates_only), &self.uris, &mut latencies).await {
                Ok(()) => lifecycles += 1,
                Err(e) => {
                    errors += 1;
                    if errors <= 3 {
                        eprintln!("lifecycle failed: {e:#}");
                    }
                }
            }
        }
        (latencies, lifecycles, errors)
    }
}

/// Three evidence blobs every lifecycle attaches (uploaded once).
async fn evidence(api: &Api, admin: &str) -> anyhow::Result<[String; 3]> {
    let uploader = api.mint(admin, "bench-uploader", "technician").await?;
    let mut uris = Vec::new();
    for content in ["before", "after", "signature"] {
        let resp = api
            .http
            .post(format!("{}/v1/blobs", api.base))
            .bearer_auth(&uploader)
            .body(format!("bench {content}"))
            .send()
            .await?;
        let v: Value = resp.json().await?;
        uris.push(v["uri"].as_str().context("blob uri")?.to_owned());
    }
    Ok([uris[0].clone(), uris[1].clone(), uris[2].clone()])
}

/// The run's one JSON line.
fn report(args: &Args, elapsed: f64, mut all: Vec<Duration>, lifecycles: u64, errors: u64) -> Value {
    all.sort_unstable();
    json!({
        "concurrency": args.concurrency,
        "duration_seconds": (elapsed * 100.0).round() / 100.0,
        "commands": all.len(),
        "lifecycles": lifecycles,
        "errors": errors,
        "commands_per_second": (all.len() as f64 / elapsed).round(),
        "p50_ms": (percentile(&all, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (percentile(&all, 0.99) * 100.0).round() / 100.0,
        "max_ms": (percentile(&all, 1.0) * 100.0).round() / 100.0,
    })
}
