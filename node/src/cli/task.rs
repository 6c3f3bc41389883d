//! `dispatch task …`: sandboxed jobs on worker nodes.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::table::{Table, at_ms, cell};
use super::{ClientArgs, connect, parse_label, print, strip_nulls};
use crate::client::Client;

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(super) enum TaskCmd {
    /// Run a command and wait: prints its output and exits with its exit code.
    Run {
        /// The image to run in (default: the sandbox image built from busybox; no registry: it must be on the worker's engine).
        #[arg(long)]
        image: Option<String>,
        /// none (default) or restricted.
        #[arg(long)]
        network: Option<String>,
        /// Memory limit in bytes (no swap).
        #[arg(long)]
        memory_bytes: Option<u64>,
        /// CPU limit in cores, e.g. 0.5.
        #[arg(long)]
        cpus: Option<f64>,
        /// Most processes the job may have.
        #[arg(long)]
        pids: Option<u32>,
        /// Seconds before the job is killed.
        #[arg(long)]
        timeout_seconds: Option<u32>,
        /// K=V, repeatable.
        #[arg(long = "env", value_parser = parse_label)]
        env: Vec<(String, String)>,
        /// PATH=LOCAL_FILE: put a local file at /workspace/PATH (repeatable).
        #[arg(long = "file", value_parser = parse_label)]
        files: Vec<(String, String)>,
        /// A node label the task needs (k=v, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// The account the task is for (scopes who may see it).
        #[arg(long)]
        account: Option<String>,
        /// The site the task is for (scopes who may see it).
        #[arg(long)]
        site: Option<String>,
        /// A ticket whose timeline shows this task.
        #[arg(long)]
        ticket: Option<String>,
        /// Return at once with the task id instead of waiting.
        #[arg(long)]
        detach: bool,
        /// Stop waiting after this long (90s, 15m, 2h); the task stays queued or running,
        /// and the command exits 124.
        #[arg(long, value_parser = super::node::parse_duration)]
        wait_timeout: Option<u64>,
        /// The command and its arguments, after --.
        #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// A task's state and attempts.
    Status {
        /// The task's id.
        id: String,
    },
    /// A finished task's output.
    Result {
        /// The task's id.
        id: String,
    },
    /// Cancel a task: a queued one at once, a running one's job is killed.
    Cancel {
        /// The task's id.
        id: String,
    },
    /// List tasks, newest last (one page).
    List {
        /// Only tasks in this state (QUEUED, DISPATCHED, RUNNING, SUCCEEDED, FAILED, CANCELLED).
        #[arg(long)]
        state: Option<String>,
    },
}

pub(super) fn task_line(t: &Value) -> String {
    let attempts = t["attempts"].as_array().map_or(0, Vec::len);
    let node = t["attempts"].as_array().and_then(|a| a.last()).and_then(|a| a["node"].as_str()).unwrap_or("-");
    let waiting = t["waiting"].as_str().map(|w| format!("\n  waiting: {w}")).unwrap_or_default();
    let line = format!(
        "{}  {:<10} attempts={} node={}  {}",
        t["id"].as_str().unwrap_or("?"),
        t["state"].as_str().unwrap_or("?"),
        attempts,
        node,
        t["spec"]["command"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    );
    line + &waiting
}

/// Waits for the task to end, prints its output, and answers the exit code to leave with.
/// Waits for task `id` to finish (saying why it waits, when no node can take it), then
/// prints its output; the exit code to leave with (124 when `timeout` ran out first).
async fn wait_and_report(
    args: &ClientArgs,
    client: &Client,
    id: &str,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let mut said = None;
    let done = loop {
        let t = client.call(Method::GET, &format!("/v1/tasks/{id}"), None, None).await?;
        if matches!(t["state"].as_str(), Some("SUCCEEDED" | "FAILED" | "CANCELLED")) {
            break t;
        }
        let waiting = t["waiting"].as_str().map(str::to_owned);
        if waiting.is_some() && waiting != said {
            eprintln!("dispatch: waiting: {}", waiting.as_deref().unwrap_or_default());
            said = waiting;
        }
        if timeout.is_some_and(|limit| started.elapsed() >= limit) {
            eprintln!(
                "dispatch: gave up waiting; task {id} is still {} (`dispatch task cancel {id}` drops it)",
                t["state"].as_str().unwrap_or("?")
            );
            return Ok(124);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let out = client.call(Method::GET, &format!("/v1/tasks/{id}/result"), None, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        use std::io::Write;
        print!("{}", out["result"]["stdout"].as_str().unwrap_or_default());
        eprint!("{}", out["result"]["stderr"].as_str().unwrap_or_default());
        let _ = std::io::stdout().flush();
        explain(&out, id, done["state"].as_str().unwrap_or("?"));
    }
    // The job's exit code is ours; a task that never ran exits 125 (like docker run).
    Ok(out["result"]["exit_code"].as_i64().map_or(125, |c| c.clamp(0, 255) as i32))
}

/// Says on stderr what happened to the run besides its output.
fn explain(out: &Value, id: &str, state: &str) {
    for (flag, what) in [("stdout_truncated", "stdout"), ("stderr_truncated", "stderr")] {
        if out["result"][flag] == true {
            eprintln!("dispatch: {what} was cut at the output cap");
        }
    }
    if out["result"]["timed_out"] == true {
        eprintln!("dispatch: the task ran past its timeout and was killed");
    }
    if out["result"]["oom_killed"] == true {
        eprintln!("dispatch: the task used more memory than its limit and was killed");
    }
    if let Some(e) = out["result"]["error"].as_str().or(out["reason"].as_str()) {
        eprintln!("dispatch: task {id} {state}: {e}");
    }
}

/// Submits a task; unless detached, waits for it and answers the exit code to leave with.
async fn run_task(args: &ClientArgs, client: &Client, command: TaskCmd) -> anyhow::Result<Option<i32>> {
    let TaskCmd::Run {
        image,
        network,
        memory_bytes,
        cpus,
        pids,
        timeout_seconds,
        env,
        files,
        labels,
        account,
        site,
        ticket,
        detach,
        wait_timeout,
        command,
    } = command
    else {
        anyhow::bail!("not a run");
    };
    let mut contents = serde_json::Map::new();
    for (path, local) in files {
        let text = std::fs::read_to_string(&local).map_err(|e| anyhow::anyhow!("reading {local}: {e}"))?;
        contents.insert(path, Value::String(text));
    }
    let map = |pairs: Vec<(String, String)>| {
        pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>()
    };
    let mut body = json!({
        "command": command, "image": image, "network_policy": network,
        "limits": { "memory_bytes": memory_bytes, "cpus": cpus, "pids": pids },
        "timeout_seconds": timeout_seconds, "env": map(env), "files": contents, "labels": map(labels),
        "account_id": account, "site_id": site, "ticket_id": ticket,
    });
    strip_nulls(&mut body);
    let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let accepted = client.call(Method::POST, "/v1/tasks", Some(body), Some(&key)).await?;
    let id = accepted["task_id"].as_str().unwrap_or_default().to_owned();
    if detach {
        print(args, &accepted, |v| v["task_id"].as_str().unwrap_or_default().to_owned());
        return Ok(None);
    }
    eprintln!("dispatch: task {id} submitted");
    wait_and_report(args, client, &id, wait_timeout.map(std::time::Duration::from_secs)).await.map(Some)
}

pub(super) async fn task(args: ClientArgs, command: TaskCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    match command {
        run @ TaskCmd::Run { .. } => {
            if let Some(code) = run_task(&args, &client, run).await? {
                std::process::exit(code);
            }
        }
        TaskCmd::Status { id } => {
            let out = client.call(Method::GET, &format!("/v1/tasks/{id}"), None, None).await?;
            print(&args, &out, task_line);
        }
        TaskCmd::Result { id } => {
            let out = client.call(Method::GET, &format!("/v1/tasks/{id}/result"), None, None).await?;
            print(&args, &out, |v| result_text(&id, v));
        }
        TaskCmd::Cancel { id } => {
            let mut out = client.call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None, None).await?;
            // A running job is killed by its node: wait (bounded) to say how it ended.
            for _ in 0..100 {
                if !matches!(out["state"].as_str(), Some("QUEUED" | "DISPATCHED" | "RUNNING")) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                out = client.call(Method::GET, &format!("/v1/tasks/{id}"), None, None).await?;
            }
            print(&args, &out, |t| match t["state"].as_str() {
                Some("CANCELLED") => format!("task {id} cancelled"),
                Some(state) if t["cancel_requested"] == true => {
                    format!(
                        "task {id} is {state}: cancel requested, its job is being killed (see `dispatch task status {id}`)"
                    )
                }
                _ => task_line(t),
            });
        }
        TaskCmd::List { state } => {
            let path = match state {
                Some(s) => format!("/v1/tasks?state={s}"),
                None => "/v1/tasks".to_owned(),
            };
            let out = client.call(Method::GET, &path, None, None).await?;
            print(&args, &out, tasks_table);
        }
    }
    Ok(())
}

/// A finished task's output, then how it ended in words.
fn result_text(id: &str, v: &Value) -> String {
    let r = &v["result"];
    let mut text = format!("{}{}", r["stdout"].as_str().unwrap_or_default(), r["stderr"].as_str().unwrap_or_default());
    let mut how = vec![format!("task {id} {}", cell(&v["state"]))];
    how.push(match r["exit_code"].as_i64() {
        Some(code) => format!("exit code {code}"),
        None => "it never ran".into(),
    });
    for (flag, said) in [
        ("cancelled", "cancelled: its job was killed"),
        ("timed_out", "killed at its timeout"),
        ("oom_killed", "killed for using more memory than its limit"),
    ] {
        if r[flag] == true {
            how.push(said.into());
        }
    }
    if let Some(why) = r["error"].as_str().or(v["reason"].as_str()) {
        how.push(why.into());
    }
    text.push_str(&how.join("; "));
    text
}

fn tasks_table(v: &Value) -> String {
    let mut t = Table::new(&["ID", "STATE", "ATTEMPTS", "NODE", "COMMAND", "WAITING"]).wide(&["IMAGE", "CREATED"]);
    for task in v["tasks"].as_array().into_iter().flatten() {
        let attempts = task["attempts"].as_array();
        let node = attempts.and_then(|a| a.last()).map_or("-".into(), |a| cell(&a["node"]));
        let (state, waiting) = (cell(&task["state"]), cell(&task["waiting"]));
        let command = task["spec"]["command"].as_array().map(|c| c.iter().map(cell).collect::<Vec<_>>().join(" "));
        let created = at_ms(task["created_ms"].as_i64().unwrap_or(0));
        let count = attempts.map_or(0, Vec::len).to_string();
        let (id, image) = (cell(&task["id"]), cell(&task["spec"]["image"]));
        t.row(vec![id, state, count, node, command.unwrap_or_default(), waiting, image, created]);
    }
    t.render("no tasks")
}
