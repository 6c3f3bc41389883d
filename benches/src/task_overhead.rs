//! Task overhead against a bare `docker run --rm` of the same image and command,
//! measured side by side (interleaved) against a running `dispatch up`: each task
//! is submitted over HTTP and polled until final. Also the dispatch latency of each
//! task (accepted → handed to its node, container start excluded), from the task's
//! own record. Prints one JSON report.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "dispatch task vs docker run --rm, side by side; plus dispatch latency")]
struct Args {
    #[arg(long)]
    server: String,
    #[arg(long)]
    admin_token_file: PathBuf,
    /// Runs of each.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    #[arg(long, default_value = "dispatch-sandbox:busybox")]
    image: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN)
}

fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    json!({ "runs": ms.len(), "mean_ms": mean, "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99) })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest has no default crypto provider in this workspace: plain-HTTP clients still need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let admin = std::fs::read_to_string(&args.admin_token_file).context("reading the admin token")?.trim().to_owned();
    let http = reqwest::Client::new();
    let command = ["true"];
    let (mut task_ms, mut docker_ms, mut dispatch_ms, mut start_ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // One of each first, unmeasured: the image exists and caches are warm.
    for i in 0..=args.runs {
        let started = Instant::now();
        let accepted: Value = http
            .post(format!("{}/v1/tasks", args.server))
            .bearer_auth(&admin)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({ "command": command, "image": args.image }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = accepted["task_id"].as_str().context("no task id")?.to_owned();
        let task = loop {
            let t: Value =
                http.get(format!("{}/v1/tasks/{id}", args.server)).bearer_auth(&admin).send().await?.json().await?;
            if matches!(t["state"].as_str(), Some("SUCCEEDED" | "FAILED" | "CANCELLED")) {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let took = started.elapsed().as_secs_f64() * 1e3;
        if task["state"] != "SUCCEEDED" {
            bail!("task {id} ended {}", task["state"]);
        }
        let started = Instant::now();
        let status =
            Command::new("docker").args(["run", "--rm", "--network", "none", &args.image]).args(command).status()?;
        let bare = started.elapsed().as_secs_f64() * 1e3;
        if !status.success() {
            bail!("docker run failed: {status}");
        }
        if i == 0 {
            continue;
        }
        task_ms.push(took);
        docker_ms.push(bare);
        let attempt = &task["attempts"][0];
        let ms = |v: &Value| v.as_i64().unwrap_or(0) as f64;
        dispatch_ms.push(ms(&attempt["dispatched_ms"]) - ms(&task["created_ms"]));
        start_ms.push(ms(&attempt["started_ms"]) - ms(&attempt["dispatched_ms"]));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let report = json!({
        "command": command,
        "image": args.image,
        "dispatch_task": summary(task_ms.clone()),
        "docker_run_rm": summary(docker_ms.clone()),
        "overhead_ratio_mean": mean(&task_ms) / mean(&docker_ms),
        "dispatch_latency": summary(dispatch_ms),
        "dispatched_to_started": summary(start_ms),
    });
    println!("{report}");
    Ok(())
}
