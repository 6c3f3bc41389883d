//! Whole-process crash cycles. `dispatch up` (orchestrator and local worker in one
//! process) runs a mixed load — ticket lifecycles, lanes whose handoffs an operator
//! decides or their deadline timers expire, callbacks to a receiver that answers or
//! fails, Docker tasks — and is SIGKILLed at a random moment, restarted on the same data
//! dir and checked after every restart: each command acknowledged before the kill
//! (and a sample of older ones) retried with its key returns its original answer, and
//! the hash chains verify (the streams the killed cycle wrote after every restart, the
//! whole log every [`VERIFY_ALL_EVERY`] restarts and after the last). After the last
//! cycle: every task and handoff has ended, each deadline fired once, every callback
//! was delivered or dead-lettered (and only failing ones were), no job container is
//! left, and Docker's own event log shows no task ran to the end twice and no two
//! attempts of a task overlapped.
//!
//! `CRASH_CYCLES` (default 10) sets the kills, `CRASH_SEED` the kill schedule;
//! `benches/crash-cycles.sh N` runs N in release. Without a Docker Engine the tasks
//! are left out, loudly.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use support::docker::{DockerEvents, check_jobs_in_docker, tasks_can_run};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{Server, key};

/// Heartbeats every 200 ms (a job's lease is 1 s); callbacks to the local receiver,
/// retried from 20 ms so a failing one reaches the DLQ within a second.
const FLAGS: &[&str] =
    &["--node-heartbeat-ms", "200", "--callback-allow-host", "127.0.0.1", "--callback-backoff-ms", "20"];
/// Concurrent clients during a cycle.
const LOADERS: usize = 6;
/// Docker tasks asked for per cycle: about what the local worker runs in a cycle, so
/// the backlog (and the settle after the last kill) does not grow with the cycles.
const TASKS_PER_CYCLE: usize = 3;
/// Older acknowledged commands retried after each restart, besides the last cycle's.
const OLDER_SAMPLE: usize = 20;
/// Restarts between two checks of every chain in the log (the last restart checks them all too).
/// Between them only the streams the killed cycle wrote are checked: a whole-log check
/// costs time in proportion to the log, so checking it after every kill made a 1,000-cycle
/// run quadratic (about 20 s per restart by cycle 450).
const VERIFY_ALL_EVERY: usize = 10;
/// How long the settled state may take to appear after the last restart.
const SETTLE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Who {
    Dispatcher,
    Agent,
    Operator,
}

struct Tokens {
    dispatcher: String,
    agent: String,
    operator: String,
}

impl Tokens {
    fn of(&self, who: Who) -> &str {
        match who {
            Who::Dispatcher => &self.dispatcher,
            Who::Agent => &self.agent,
            Who::Operator => &self.operator,
        }
    }
}

/// A command answered 2xx: a retry with its key must get this very answer.
#[derive(Clone, Debug)]
struct Acked {
    cycle: usize,
    who: Who,
    path: String,
    key: String,
    body: Value,
    status: u16,
    answer: Value,
}

/// What the load was told, over every cycle.
#[derive(Default)]
struct Ledger {
    acked: Vec<Acked>,
    tasks: Vec<String>,
    /// Lanes whose handoff decision was acknowledged, and whether their callback fails.
    decided: BTreeMap<String, bool>,
    /// Lanes whose handoff was acknowledged with a 1 s deadline and no one decides.
    timed: Vec<String>,
}

/// One cycle's clients.
#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    url: String,
    hooks: String,
    tokens: Arc<Tokens>,
    ledger: Arc<Mutex<Ledger>>,
    cycle: usize,
}

impl Load {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }

    /// POSTs with a fresh key; records and returns the answer when it is a success.
    async fn post(&self, who: Who, path: &str, body: Value) -> Option<Value> {
        let key = key();
        let (status, answer) = post(&self.http, &self.url, self.tokens.of(who), path, &key, &body).await.ok()?;
        if !(200..300).contains(&status) {
            return None;
        }
        let acked = Acked { cycle: self.cycle, who, path: path.to_owned(), key, body, status, answer: answer.clone() };
        self.ledger().acked.push(acked);
        Some(answer)
    }

    /// A ticket from creation to dispatched, one command after another.
    async fn ticket(&self) -> Option<()> {
        let create = json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "DOOR_WONT_LATCH", "summary": "crash cycle" });
        let created = self.post(Who::Dispatcher, "/v1/tickets", create).await?;
        let id = created["id"].as_str()?.to_owned();
        let window: Value = serde_json::from_str(support::WINDOW).unwrap();
        for (step, body) in [
            ("triage", json!({ "workflow_outcome": "READY_TO_SCHEDULE" })),
            ("schedule/propose", json!({ "windows": [window.clone()] })),
            ("schedule/confirm", json!({ "window": window })),
            ("assignment/dispatch", json!({ "technician_id": "tech-1" })),
        ] {
            self.post(Who::Dispatcher, &format!("/v1/tickets/{id}/{step}"), body).await?;
        }
        Some(())
    }

    /// A lane that asks for a decision: decided by the operator, or (`timed`) left to
    /// expire at its 1 s deadline. Its callback goes to `/ok/` or `/fail/`.
    async fn lane(&self, lane: &str, timed: bool, failing: bool) -> Option<()> {
        let hook = format!("{}/{}/{lane}", self.hooks, if failing { "fail" } else { "ok" });
        self.post(Who::Agent, "/v1/lanes", json!({ "lane_id": lane, "callback_url": hook })).await?;
        let checkpoint = json!({ "name": "c1", "state": { "step": 1 } });
        self.post(Who::Agent, &format!("/v1/lanes/{lane}/checkpoints"), checkpoint).await?;
        let handoff = json!({ "checkpoint": "c1", "trigger_class": "policy", "reason": "over limit", "context": {},
            "queue": "ops", "sla_seconds": if timed { 1 } else { 600 }, "deadline_seconds": if timed { 1 } else { 3600 },
            "timeout_action": "reject" });
        let asked = self.post(Who::Agent, &format!("/v1/lanes/{lane}/handoffs"), handoff).await?;
        if timed {
            self.ledger().timed.push(lane.to_owned());
            return Some(());
        }
        let handoff_id = asked["lane"]["handoff"]["handoff_id"].as_str()?.to_owned();
        let decision = json!({ "action": "approve", "reason": "fine" });
        self.post(Who::Operator, &format!("/v1/handoffs/{handoff_id}/decision"), decision).await?;
        self.ledger().decided.insert(lane.to_owned(), failing);
        Some(())
    }

    /// A short Docker job.
    async fn task(&self) -> Option<()> {
        let spec = json!({ "command": ["sh", "-c", "sleep 0.3; echo ran"], "timeout_seconds": 30 });
        let accepted = self.post(Who::Agent, "/v1/tasks", spec).await?;
        self.ledger().tasks.push(accepted["task_id"].as_str()?.to_owned());
        Some(())
    }

    /// Flows one after another until the process is killed (bounded all the same).
    async fn run(self, loader: usize, tasks: bool) {
        for n in 0..10_000 {
            let lane = format!("c{}-{loader}-{n}", self.cycle);
            let _ = match n % 4 {
                0 => self.ticket().await,
                1 => self.lane(&format!("{lane}-ok"), false, false).await,
                2 => self.lane(&format!("{lane}-fail"), false, true).await,
                _ if tasks && loader == 0 && n / 4 < TASKS_PER_CYCLE => self.task().await,
                _ => self.lane(&format!("{lane}-timed"), true, false).await,
            };
        }
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> reqwest::Result<(u16, Value)> {
    let resp = http
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// A callback receiver: `/ok/{lane}` answers 200 and counts, `/fail/{lane}` answers 500.
async fn hooks() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    use axum::extract::Path;
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = seen.clone();
    let app = axum::Router::new()
        .route(
            "/ok/{lane}",
            axum::routing::post(move |Path(lane): Path<String>| async move {
                *counted.lock().unwrap().entry(lane).or_default() += 1;
                "ok"
            }),
        )
        .route("/fail/{lane}", axum::routing::post(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn mint(s: &Server, sub: &str, role: &str) -> String {
    let body = json!({ "sub": sub, "role": role, "accounts": ["*"], "sites": ["*"], "queues": ["ops"], "ttl_seconds": 86_400 });
    let (status, minted) = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await;
    assert_eq!(status, 201, "{minted}");
    minted["token"].as_str().unwrap().to_owned()
}

/// The stream an acknowledged command wrote to, named by the entities' own `stream`
/// functions, when its path or answer says which (a decision's lane is written by that
/// lane's earlier commands of the same cycle).
fn stream_of(a: &Acked) -> Option<String> {
    let mut parts = a.path.trim_start_matches("/v1/").split('/');
    let (kind, id) = (parts.next()?, parts.next());
    let ticket = |id: &str| id.parse().ok().map(actors::ticket::store::stream);
    match (kind, id) {
        ("tickets", Some(id)) => ticket(id),
        ("tickets", None) => ticket(a.answer["id"].as_str()?),
        ("lanes", Some(id)) => Some(actors::lane::store::stream(id)),
        ("lanes", None) => Some(actors::lane::store::stream(a.body["lane_id"].as_str()?)),
        ("tasks", None) => Some(actors::task::store::stream(a.answer["task_id"].as_str()?)),
        _ => None,
    }
}

/// Verifies the chains of `streams`, or of the whole log when `streams` is `None`.
async fn check_chains(s: &Server, streams: Option<BTreeSet<String>>, killed: usize) {
    let paths = match streams {
        None => vec!["/v1/admin/audit/verify".to_owned()],
        Some(streams) => streams.iter().map(|st| format!("/v1/admin/audit/verify?stream={st}")).collect(),
    };
    for path in paths {
        let (status, report) = s.send("GET", &path, &s.admin_token, None, None).await;
        assert!(status == 200 && report["ok"] == true, "after the kill in cycle {killed}, {path}: {report}");
    }
}

/// After a restart: the chains verify (all of them when `whole`, else the ones the killed
/// cycle wrote), and every command acknowledged in the cycle that was just killed, with a
/// sample of older ones, replays its original answer.
async fn check_restart(
    s: &Server,
    tokens: &Tokens,
    ledger: &Mutex<Ledger>,
    killed: usize,
    whole: bool,
    rng: &mut StdRng,
) -> usize {
    let (written, to_check): (BTreeSet<String>, Vec<Acked>) = {
        let ledger = ledger.lock().unwrap();
        let (recent, older): (Vec<&Acked>, Vec<&Acked>) = ledger.acked.iter().partition(|a| a.cycle == killed);
        let written = recent.iter().copied().filter_map(stream_of).collect();
        let sample = (0..OLDER_SAMPLE.min(older.len())).map(|_| older[rng.gen_range(0..older.len())]);
        (written, recent.into_iter().chain(sample).cloned().collect())
    };
    check_chains(s, (!whole).then_some(written), killed).await;
    for a in &to_check {
        let (status, answer) = s.send("POST", &a.path, tokens.of(a.who), Some(&a.key), Some(a.body.clone())).await;
        assert_eq!(
            (status, &answer),
            (a.status, &a.answer),
            "after the kill in cycle {killed}: the retry of {:?}'s POST {} (key {}, acknowledged in cycle {}) got another answer",
            a.who,
            a.path,
            a.key,
            a.cycle
        );
    }
    to_check.len()
}

/// Polls `path` as admin until `done` holds, at most [`SETTLE`].
async fn until(s: &Server, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let (_, body) = s.send("GET", path, &s.admin_token, None, None).await;
        if done(&body) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{what} not within {SETTLE:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the server says about its deliveries, for a failure message: the callback
/// metrics and the last warnings of its log.
async fn delivery_view(s: &Server) -> String {
    let metrics = support::get(&format!("{}/metrics", s.url)).await.map(|r| r.text());
    let metrics = match metrics {
        Ok(text) => text.await.unwrap_or_default(),
        Err(e) => format!("no metrics: {e}"),
    };
    let callbacks: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("dispatch_callback") || l.starts_with("dispatch_dlq")).collect();
    let log = std::fs::read_to_string(Server::log_path(&s.data_dir)).unwrap_or_default();
    let warnings: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    format!("server metrics:\n{}\nlast lines of its log:\n{}", callbacks.join("\n"), warnings.join("\n"))
}

/// Every dead-lettered lane, over every page.
async fn dead_lettered(s: &Server) -> Vec<String> {
    let (mut lanes, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/dlq?limit=500&cursor={c}"),
            None => "/v1/dlq?limit=500".to_owned(),
        };
        let (status, page) = s.send("GET", &path, &s.admin_token, None, None).await;
        assert_eq!(status, 200, "{page}");
        lanes.extend(page["deliveries"].as_array().unwrap().iter().map(|d| d["lane_id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return lanes,
        }
    }
}

/// The settled state after the last restart: tasks ended, deadlines fired once,
/// callbacks delivered or dead-lettered. Returns what was checked, counted.
async fn check_settled(s: &Server, ledger: &Ledger, seen: &Mutex<HashMap<String, usize>>) -> Value {
    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ledger.tasks {
        let done = |t: &Value| matches!(t["state"].as_str(), Some("SUCCEEDED" | "FAILED" | "CANCELLED"));
        let task = until(s, &format!("/v1/tasks/{id}"), &format!("task {id} ended"), done).await;
        // The job always succeeds when it runs: a crash may lose an attempt, never fail one.
        let failed_run = |a: &Value| a["outcome"]["ran"].is_object() && a["outcome"]["ran"]["succeeded"] != true;
        assert!(!task["attempts"].as_array().unwrap().iter().any(failed_run), "a crash made a run fail: {task}");
        *ended.entry(task["state"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for lane in &ledger.timed {
        let path = format!("/v1/lanes/{lane}");
        until(s, &path, &format!("lane {lane}'s deadline"), |l| l["handoff"]["status"] == "EXPIRED").await;
        let (_, timeline) = s.send("GET", &format!("{path}/timeline"), &s.admin_token, None, None).await;
        let fired = timeline["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "handoff.expired").count();
        assert_eq!(fired, 1, "lane {lane}'s deadline fired {fired} times: {timeline}");
    }
    let resolved: Vec<(&String, bool)> =
        ledger.decided.iter().map(|(l, f)| (l, *f)).chain(ledger.timed.iter().map(|l| (l, false))).collect();
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let dlq: std::collections::HashSet<String> = dead_lettered(s).await.into_iter().collect();
        let wrongly: Vec<&String> = dlq.iter().filter(|l| !l.ends_with("-fail")).collect();
        assert!(wrongly.is_empty(), "callbacks that were answered 200 are in the DLQ: {wrongly:?}");
        let missing: Vec<&String> = {
            let seen = seen.lock().unwrap();
            resolved
                .iter()
                .filter(|(lane, failing)| match failing {
                    true => !dlq.contains(lane.as_str()),
                    false => !seen.contains_key(lane.as_str()),
                })
                .map(|(lane, _)| *lane)
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            panic!("callbacks never delivered nor dead-lettered: {missing:?}\n{}", delivery_view(s).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    json!({ "tasks": ended, "deadlines": ledger.timed.len(), "callbacks": resolved.len() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_mixed_load_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("crash cycles: {cycles}, kill schedule CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let docker = tasks_can_run("the crash cycles");
    let mut events = docker.then(DockerEvents::watch);
    let dir = support::tempdir();
    let data = dir.path().join("data");
    let (hooks, seen) = hooks().await;
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let http = support::client_builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut tokens: Option<Arc<Tokens>> = None;
    let mut replayed = 0;
    for cycle in 0..=cycles {
        let s = Server::start_with(&data, FLAGS);
        if tokens.is_none() {
            tokens = Some(Arc::new(Tokens {
                dispatcher: mint(&s, "disp-1", "dispatcher").await,
                agent: mint(&s, "bot", "agent").await,
                operator: mint(&s, "ann", "operator").await,
            }));
        }
        let tokens = tokens.clone().unwrap();
        if cycle > 0 {
            let whole = cycle % VERIFY_ALL_EVERY == 0 || cycle == cycles;
            replayed += check_restart(&s, &tokens, &ledger, cycle - 1, whole, &mut rng).await;
            if cycle % 50 == 0 {
                eprintln!("{cycle} kills survived: {replayed} acknowledged commands replayed their answers");
            }
        }
        if cycle == cycles {
            let ledger = std::mem::take(&mut *ledger.lock().unwrap()); // the loaders are gone
            let settled = check_settled(&s, &ledger, &seen).await;
            let jobs = match events.take() {
                Some(events) if !ledger.tasks.is_empty() => check_jobs_in_docker(&ledger.tasks, &events.collect()),
                _ => 0,
            };
            println!(
                "{}",
                json!({ "cycles": cycles, "seed": seed, "acknowledged": ledger.acked.len(), "replayed": replayed,
                    "lost": 0, "settled": settled, "jobs": jobs })
            );
            return;
        }
        let load = Load {
            http: http.clone(),
            url: s.url.clone(),
            hooks: hooks.clone(),
            tokens,
            ledger: ledger.clone(),
            cycle,
        };
        let loaders: Vec<_> = (0..LOADERS).map(|i| tokio::spawn(load.clone().run(i, docker))).collect();
        // The kill point: a random moment of the load, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        drop(s); // SIGKILL, and reaped
        for l in loaders {
            l.abort();
            let _ = l.await;
        }
    }
}
