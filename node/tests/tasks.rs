//! Tasks end to end on `dispatch up`: accepted durably, dispatched over QUIC to the
//! local worker, run in Docker, result and exit code back; idempotent creation,
//! cancel of a running job, a task in its ticket's timeline, refusals. Skipped,
//! loudly, when no Docker Engine answers.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::Server;

fn docker_answers() -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("\n!!! no Docker Engine answers: SKIPPING the task tests !!!\n");
    }
    ok
}

async fn submit(s: &Server, token: &str, key: &str, body: Value) -> (u16, Value) {
    s.send("POST", "/v1/tasks", token, Some(key), Some(body)).await
}

/// Polls the task until `done` holds (bounded): it runs on the worker's schedule.
async fn wait(s: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let (_, t) = s.send("GET", &format!("/v1/tasks/{id}"), &s.admin_token, None, None).await;
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} never got there");
}

fn finished(t: &Value) -> bool {
    matches!(t["state"].as_str(), Some("SUCCEEDED" | "FAILED" | "CANCELLED"))
}

/// The job containers of the worker whose data dir is `worker_dir` (other tests' jobs
/// may run on the same engine at the same time).
fn job_containers(worker_dir: &std::path::Path) -> String {
    let workspaces = std::fs::canonicalize(worker_dir.join("workspaces")).unwrap();
    let owner = format!("label=dispatch.worker={}", workspaces.display());
    let out = Command::new("docker").args(["ps", "-a", "--filter", &owner, "--format", "{{.Names}}"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn tasks_run_on_the_local_worker_and_come_back_with_their_output() {
    if !docker_answers() {
        return;
    }
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let admin = s.admin_token.clone();

    let hello = json!({ "command": ["echo", "hello"] });
    let (status, accepted) = submit(&s, &admin, "k-hello", hello.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["task_id"].as_str().unwrap().to_owned();
    let t = wait(&s, &id, finished).await;
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    assert_eq!((t["attempts"].as_array().unwrap().len(), t["attempts"][0]["node"].clone()), (1, json!("node-1")));
    let (status, result) = s.send("GET", &format!("/v1/tasks/{id}/result"), &admin, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (result["result"]["stdout"].clone(), result["result"]["exit_code"].clone()),
        (json!("hello\n"), json!(0))
    );

    // Idempotent creation: the same key and body replay; another body is refused.
    let (status, _, again) =
        s.send_raw("POST", "/v1/tasks", &admin, Some("k-hello"), Some(hello.to_string().into_bytes()), &[]).await;
    assert_eq!((status, again["task_id"].clone()), (202, json!(id)));
    let (status, reused) = submit(&s, &admin, "k-hello", json!({ "command": ["echo", "other"] })).await;
    assert_eq!((status, reused["error"]["code"].clone()), (409, json!("IDEMPOTENCY_KEY_REUSED")));

    // The CLI waits, prints the output and passes the exit code through.
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args(["task", "--server", &s.url, "--token", &admin, "run", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["echo", "hello"]);
    assert_eq!((String::from_utf8_lossy(&out.stdout).as_ref(), out.status.code()), ("hello\n", Some(0)));
    let out = cli(&["sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!((String::from_utf8_lossy(&out.stderr).contains("oops"), out.status.code()), (true, Some(3)));

    // A running job: its result is not there yet; cancel kills it and removes its container.
    let (_, sleeper) = submit(&s, &admin, "k-sleep", json!({ "command": ["sleep", "60"] })).await;
    let sleeper = sleeper["task_id"].as_str().unwrap().to_owned();
    wait(&s, &sleeper, |t| t["state"] == "RUNNING").await;
    let worker_dir = dir.path().join("worker");
    assert!(job_containers(&worker_dir).contains("dispatch-job-"), "the running job's container is this worker's");
    let (status, early) = s.send("GET", &format!("/v1/tasks/{sleeper}/result"), &admin, None, None).await;
    assert_eq!((status, early["error"]["code"].clone()), (409, json!("TASK_NOT_FINISHED")));
    let (status, _) = s.send("POST", &format!("/v1/tasks/{sleeper}/cancel"), &admin, None, Some(json!({}))).await;
    assert_eq!(status, 200);
    let t = wait(&s, &sleeper, finished).await;
    assert_eq!(t["state"], "CANCELLED", "{t}");
    let (_, result) = s.send("GET", &format!("/v1/tasks/{sleeper}/result"), &admin, None, None).await;
    assert_eq!(result["result"]["cancelled"], true, "{result}");
    let (status, again) = s.send("POST", &format!("/v1/tasks/{sleeper}/cancel"), &admin, None, Some(json!({}))).await;
    assert_eq!((status, again["error"]["code"].clone()), (409, json!("TASK_FINISHED")));
    assert_eq!(job_containers(&worker_dir), "", "no job container is left behind");

    // A task linked to a ticket shows up in the ticket's timeline.
    let dispatcher = s.token("disp", "dispatcher", &["acct-1"], &["*"]).await;
    let ticket = support::new_ticket(&s, &dispatcher).await;
    let linked = json!({ "command": ["echo", "linked-output"], "env": { "API_HINT": "env-value-42" },
        "account_id": "acct-1", "site_id": "site-1", "ticket_id": ticket });
    let (status, accepted) = submit(&s, &admin, "k-linked", linked).await;
    assert_eq!(status, 202, "{accepted}");
    let task_id = accepted["task_id"].as_str().unwrap().to_owned();
    wait(&s, &task_id, finished).await;
    let (_, timeline) = s.send("GET", &format!("/v1/tickets/{ticket}/timeline"), &dispatcher, None, None).await;
    let kinds: Vec<(String, String)> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["stream"].as_str().unwrap().to_owned(), e["kind"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(kinds[0].1, "ticket.created");
    for kind in ["task.created", "task.dispatched", "task.finished"] {
        assert!(kinds.contains(&(format!("task/{task_id}"), kind.into())), "{kind} missing from {kinds:?}");
    }
    // Need to know: a dispatcher (who cannot read task results) sees the task's state
    // changes, not its spec, env or output; an admin sees them.
    let shown = timeline.to_string();
    assert!(!shown.contains("env-value-42") && !shown.contains("linked-output"), "{shown}");
    let (_, full) = s.send("GET", &format!("/v1/tickets/{ticket}/timeline"), &admin, None, None).await;
    assert!(full.to_string().contains("env-value-42"), "{full}");

    // Refusals.
    let agent = s.token("bot", "agent", &["acct-1"], &["*"]).await;
    for (token, key, body, want, code) in [
        (&dispatcher, Some("k1"), json!({ "command": ["true"] }), 403, "FORBIDDEN"),
        (&agent, Some("k2"), json!({ "command": ["true"], "account_id": "acct-2" }), 403, "SCOPE_FORBIDDEN"),
        (&admin, None, json!({ "command": ["true"] }), 400, "MISSING_IDEMPOTENCY_KEY"),
        (&admin, Some("k3"), json!({ "command": [] }), 422, "VALIDATION_ERROR"),
        (&admin, Some("k4"), json!({ "command": ["true"], "files": { "../x": "" } }), 422, "VALIDATION_ERROR"),
        (
            &admin,
            Some("k5"),
            json!({ "command": ["true"], "env": { "DISPATCH_JOB_ID": "x" } }),
            422,
            "VALIDATION_ERROR",
        ),
        (&admin, Some("k6"), json!({ "command": ["true"], "limits": { "pids": 1 } }), 422, "VALIDATION_ERROR"),
    ] {
        let (status, body) = s.send("POST", "/v1/tasks", token, key, Some(body)).await;
        assert_eq!((status, body["error"]["code"].as_str().unwrap_or_default()), (want, code), "{body}");
    }
    let (status, body) = s.send("GET", "/v1/tasks/nope", &admin, None, None).await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("TASK_NOT_FOUND")));
    let (status, listed) = s.send("GET", "/v1/tasks?state=SUCCEEDED", &agent, None, None).await;
    assert_eq!(status, 200);
    assert!(
        listed["tasks"].as_array().unwrap().iter().all(|t| t["spec"]["account_id"] == "acct-1"),
        "scoped list: {listed}"
    );

    let metrics = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    for series in [
        "dispatch_tasks_total{outcome=\"SUCCEEDED\"} 3",
        "dispatch_tasks_total{outcome=\"FAILED\"} 1",
        "dispatch_tasks_total{outcome=\"CANCELLED\"} 1",
        "dispatch_task_dispatch_latency_seconds_count",
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
    s.stop();
}
