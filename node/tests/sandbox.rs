//! The sandbox against the real Docker Engine: every rule of DESIGN.md §9 observed
//! from inside a job, and no container left behind. Skipped, loudly, when no engine
//! answers.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

use std::collections::BTreeMap;
use std::path::PathBuf;

use cluster::proto::{JobResult, JobSpec, NetworkPolicy};
use dispatch_node::sandbox::{DEFAULT_IMAGE, Sandbox};
use tokio::sync::{OnceCell, watch};

/// One sandbox for the whole file (the image is built once), or None without an engine.
async fn sandbox() -> Option<&'static Sandbox> {
    static SANDBOX: OnceCell<Option<Sandbox>> = OnceCell::const_new();
    SANDBOX
        .get_or_init(|| async {
            let dir = std::env::temp_dir().join(format!("dispatch-sandbox-test-{}", std::process::id()));
            match Sandbox::connect(dir, PathBuf::from("/bin/busybox")).await {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("\n!!! no Docker Engine answers ({e}): SKIPPING the sandbox tests !!!\n");
                    None
                }
            }
        })
        .await
        .as_ref()
}

fn job(name: &str, script: &str) -> JobSpec {
    JobSpec {
        job_id: format!("test-{name}-{}/1", std::process::id()),
        task_id: format!("test-{name}"),
        attempt: 1,
        command: vec!["sh".into(), "-c".into(), script.into()],
        image: DEFAULT_IMAGE.into(),
        network: NetworkPolicy::None,
        memory_bytes: 64 << 20,
        cpu_millis: 500,
        pids: 64,
        timeout_ms: 20_000,
        env: BTreeMap::new(),
        files: BTreeMap::new(),
        output_cap: 64 * 1024,
    }
}

/// Runs a job and checks that its container is gone afterwards.
async fn run(s: &Sandbox, spec: JobSpec) -> JobResult {
    let (_keep, cancel) = watch::channel(false);
    let result = s.run(&spec, cancel).await;
    assert!(result.error.is_none(), "{}: sandbox error {:?}", spec.job_id, result.error);
    let left = s.leftover_containers().await.unwrap();
    assert!(!left.contains(&spec.job_id), "container of {} left behind", spec.job_id);
    result
}

#[tokio::test]
async fn output_exit_code_and_the_job_context() {
    let Some(s) = sandbox().await else { return };
    let r =
        run(s, job("exit", "echo out; echo err >&2; echo $DISPATCH_TASK_ID $DISPATCH_WORKSPACE; id -u; exit 3")).await;
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stdout, "out\ntest-exit /workspace\n65534\n", "runs as nobody, with its context");
    assert_eq!(r.stderr, "err\n");
    assert!(
        !dispatch_node::protocol::job_result(r.clone()).succeeded()
            && !r.timed_out
            && !r.oom_killed
            && !r.stdout_truncated
    );
    let mut env = job("env", "env | sort");
    env.env.insert("GREETING".into(), "hi".into());
    let r = run(s, env).await;
    assert!(r.stdout.contains("GREETING=hi"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("DISPATCH_TOKEN") && !r.stdout.contains("RUST_LOG"),
        "nothing of the worker's env: {}",
        r.stdout
    );
}

#[tokio::test]
async fn no_network_under_none_and_no_route_out_under_restricted() {
    let Some(s) = sandbox().await else { return };
    let probe = "wget -q -T 2 -O - http://1.1.1.1/ || { echo unreachable; exit 7; }; cat /proc/net/dev | tail -n +3 | cut -d: -f1";
    let r = run(s, job("net-none", probe)).await;
    assert_eq!(r.exit_code, Some(7), "{r:?}");
    let ifaces = run(s, job("ifaces", "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")).await;
    assert_eq!(ifaces.stdout.trim(), "lo", "only loopback under none");
    let mut restricted = job("net-restricted", probe);
    restricted.network = NetworkPolicy::Restricted;
    let r = run(s, restricted).await;
    assert_eq!(r.exit_code, Some(7), "an internal network has no route out: {r:?}");
}

#[tokio::test]
async fn memory_over_the_limit_is_oom_killed_and_reported() {
    let Some(s) = sandbox().await else { return };
    let mut hog = job("oom", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}");
    hog.memory_bytes = 32 << 20;
    let r = run(s, hog).await;
    assert!(r.oom_killed, "{r:?}");
    assert_eq!(r.exit_code, Some(137));
    assert!(!r.stdout.contains("survived"));
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    let Some(s) = sandbox().await else { return };
    let mut bomb = job("forkbomb", "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo spawned");
    bomb.pids = 32;
    bomb.timeout_ms = 10_000;
    let r = run(s, bomb).await;
    assert!(r.stderr.contains("can't fork") || r.stderr.contains("Resource temporarily unavailable"), "{r:?}");
}

#[tokio::test]
async fn the_root_is_read_only_and_the_workspace_holds_the_files() {
    let Some(s) = sandbox().await else { return };
    let r = run(s, job("ro", "touch /x")).await;
    assert_ne!(r.exit_code, Some(0));
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    let mut files =
        job("files", "pwd; cat data/in.txt; echo made > out.txt && cat out.txt; touch /tmp/ok && echo tmp ok");
    files.files.insert("data/in.txt".into(), "hello from the task\n".into());
    let r = run(s, files).await;
    assert_eq!(r.stdout, "/workspace\nhello from the task\nmade\ntmp ok\n", "{r:?}");
    assert_eq!(r.exit_code, Some(0));
}

#[tokio::test]
async fn the_timeout_kills_and_huge_output_is_cut_and_flagged() {
    let Some(s) = sandbox().await else { return };
    let mut slow = job("timeout", "echo started; sleep 60; echo never");
    slow.timeout_ms = 1_000;
    let started = std::time::Instant::now();
    let r = run(s, slow).await;
    assert!(r.timed_out && r.exit_code != Some(0), "{r:?}");
    assert_eq!(r.stdout, "started\n");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    let r = run(s, job("huge", "yes 0123456789 | head -c 5000000; echo done >&2")).await;
    assert!(r.stdout_truncated && !r.stderr_truncated, "{}", r.stdout.len());
    assert_eq!(r.stdout.len(), 64 * 1024);
    assert_eq!(r.exit_code, Some(0));
}

#[tokio::test]
async fn bad_jobs_are_refused_before_anything_runs() {
    let Some(s) = sandbox().await else { return };
    let mut escape = job("escape", "true");
    escape.files.insert("../outside".into(), "x".into());
    let (_keep, cancel) = watch::channel(false);
    let r = s.run(&escape, cancel.clone()).await;
    assert!(r.error.as_deref().is_some_and(|e| e.contains("relative")), "{r:?}");
    let mut missing = job("missing-image", "true");
    missing.image = "no-such-image:1".into();
    let r = s.run(&missing, cancel).await;
    assert!(r.error.as_deref().is_some_and(|e| e.contains("no registry")), "{r:?}");
}

#[tokio::test]
async fn a_workspace_past_its_quota_stops_the_job() {
    if sandbox().await.is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("dispatch-sandbox-quota-{}", std::process::id()));
    let s = Sandbox::connect(dir, PathBuf::from("/bin/busybox")).await.unwrap().with_workspace_quota(4 << 20);
    // Writes without end: only the quota stops it (the timeout is far away).
    let spec = job("quota", "while true; do cat /bin/busybox >> /workspace/fill; done");
    let (_keep, cancel) = watch::channel(false);
    let result = s.run(&spec, cancel).await;
    let error = result.error.clone().unwrap_or_default();
    assert!(error.contains("quota"), "{result:?}");
    assert!(!result.timed_out, "stopped by the quota, not the timeout");
    assert!(!s.leftover_containers().await.unwrap().contains(&spec.job_id));
}

/// Without the busybox the default image is built from, the worker says so at start and a
/// job that needs the image fails saying what to do, not with a bare "No such file".
#[tokio::test]
async fn a_host_without_busybox_is_told_how_to_get_the_default_image() {
    if sandbox().await.is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("dispatch-sandbox-nobusybox-{}", std::process::id()));
    let absent = format!("dispatch-sandbox-test:never-built-{}", std::process::id());
    let s = Sandbox::connect(dir, PathBuf::from("/nonexistent/busybox")).await.unwrap().with_default_image(&absent);
    let problem = s.default_image_problem().await.unwrap();
    for needed in [absent.as_str(), "/nonexistent/busybox", "busybox-static", "--sandbox-busybox", "--image"] {
        assert!(problem.contains(needed), "{needed:?} missing from: {problem}");
    }
    let mut spec = job("nobusybox", "true");
    spec.image = absent.clone();
    let (_keep, cancel) = watch::channel(false);
    let result = s.run(&spec, cancel).await;
    assert_eq!(result.error.as_deref(), Some(problem.as_str()), "{result:?}");
}

/// A worker that died while its jobs ran comes back to find their containers: one that
/// ended hands over its exit code and output (the job is not run again), one still
/// running is stopped and reported lost. Another worker on the same engine sees neither.
#[tokio::test]
async fn a_restarted_worker_takes_back_what_its_job_containers_hold() {
    if sandbox().await.is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("dispatch-sandbox-restart-{}", std::process::id()));
    let before = std::sync::Arc::new(Sandbox::connect(dir.clone(), PathBuf::from("/bin/busybox")).await.unwrap());
    let ended = job("ended", "echo out; echo err >&2; exit 4");
    let (_keep, cancel) = watch::channel(false);
    let r = before.run_kept(&ended, cancel.clone()).await;
    assert_eq!(r.exit_code, Some(4), "{r:?}");
    // The worker process dies while this one runs: its supervision is gone, the container is not.
    let running = job("running", "sleep 60");
    let supervising = tokio::spawn({
        let (before, running, cancel) = (before.clone(), running.clone(), cancel.clone());
        async move { before.run_kept(&running, cancel).await }
    });
    let name = format!("dispatch-job-{}", running.job_id.replace('/', "_"));
    for _ in 0..200 {
        let state = std::process::Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", &name]).output();
        if state.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    supervising.abort();

    let other = Sandbox::connect(dir.with_extension("other"), PathBuf::from("/bin/busybox")).await.unwrap();
    assert!(other.leftover_results().await.unwrap().is_empty(), "another worker's containers are not its own");
    let after = Sandbox::connect(dir, PathBuf::from("/bin/busybox")).await.unwrap();
    let found: BTreeMap<String, JobResult> = after.leftover_results().await.unwrap().into_iter().collect();
    let took = &found[&ended.job_id];
    assert_eq!((took.exit_code, took.stdout.as_str(), took.stderr.as_str()), (Some(4), "out\n", "err\n"), "{took:?}");
    assert!(!took.lease_lost && took.finished_ms >= took.started_ms && took.started_ms > 0, "{took:?}");
    let stopped = &found[&running.job_id];
    assert!(stopped.lease_lost && stopped.exit_code.is_none(), "{stopped:?}");
    for id in [&ended.job_id, &running.job_id] {
        after.release(id).await;
        assert!(!after.leftover_containers().await.unwrap().contains(id), "{id} released");
    }
}

fn container_running(name: &str) -> bool {
    let state = std::process::Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", name]).output();
    state.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A job's fence, a process of its own, stops the container once the worker stops
/// renewing its hold (the worker died or froze), and leaves a renewed one running. The
/// stopped job is then taken back as lost, not as a run that failed.
#[tokio::test]
async fn a_fence_stops_a_job_whose_worker_stopped_renewing_it() {
    if sandbox().await.is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("dispatch-sandbox-fence-{}", std::process::id()));
    let fenced = Sandbox::connect(dir.clone(), PathBuf::from("/bin/busybox")).await.unwrap();
    let s = std::sync::Arc::new(fenced.with_fence(PathBuf::from(env!("CARGO_BIN_EXE_dispatch"))));
    let (orphan, renewed) = (job("orphan", "sleep 60"), job("renewed", "sleep 60"));
    let (_keep, cancel) = watch::channel(false);
    let mut runs = Vec::new();
    for j in [&orphan, &renewed] {
        s.hold(&j.job_id, now_ms() + 1_500);
        let (s, j, cancel) = (s.clone(), j.clone(), cancel.clone());
        runs.push(tokio::spawn(async move { s.run_kept(&j, cancel).await }));
    }
    let name = |j: &JobSpec| format!("dispatch-job-{}", j.job_id.replace('/', "_"));
    let started = std::time::Instant::now();
    while !(container_running(&name(&orphan)) && container_running(&name(&renewed))) {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the jobs never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for r in runs {
        r.abort(); // the worker is gone: nothing supervises the containers any more
    }
    // Only `renewed` is held on, for 4 s; `orphan`'s hold runs out after 1.5 s.
    let held = std::time::Instant::now();
    while held.elapsed() < std::time::Duration::from_secs(4) {
        s.hold(&renewed.job_id, now_ms() + 1_000);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!container_running(&name(&orphan)), "the fence stopped the job nobody renewed");
    assert!(container_running(&name(&renewed)), "a renewed job runs on");

    let after = Sandbox::connect(dir, PathBuf::from("/bin/busybox")).await.unwrap();
    let found: BTreeMap<String, JobResult> = after.leftover_results().await.unwrap().into_iter().collect();
    assert!(found[&orphan.job_id].lease_lost, "taken back as lost: {:?}", found[&orphan.job_id]);
    for id in [&orphan.job_id, &renewed.job_id] {
        after.release(id).await;
    }
}
