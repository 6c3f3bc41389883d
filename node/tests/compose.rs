//! deploy/docker: images built on this machine (no registry), `docker-compose up` of an
//! orchestrator, two workers and Prometheus; a task runs in a worker container, every
//! Prometheus target is up, and `down -v` leaves no container, volume or network.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    let engine = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    if !engine.as_ref().is_ok_and(|o| o.status.success()) {
        return Some("no Docker Engine answers".into());
    }
    for (tool, package) in [("docker-compose", "docker-compose"), ("prometheus", "prometheus")] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} is not installed (Debian's {package})"));
        }
    }
    (!Path::new("/bin/busybox").exists()).then(|| "/bin/busybox is missing (Debian's busybox-static)".into())
}

/// One compose project of this test, taken down (with its volumes) however the test ends.
struct Stack {
    project: String,
    env: Vec<(String, String)>,
    images: [String; 2],
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Output {
        let file = deploy("docker/compose.yaml");
        Command::new("docker-compose")
            .args(["-p", &self.project, "-f", file.to_str().unwrap()])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }

    fn leftovers(&self) -> String {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut left = String::new();
        for what in [&["ps", "-aq"][..], &["volume", "ls", "-q"], &["network", "ls", "-q"]] {
            let out = Command::new("docker").args(what).args(["--filter", &label]).output().unwrap();
            left.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        left
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans"]);
        let _ = Command::new("docker").arg("rmi").args(&self.images).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_runs_a_cluster_from_local_images_and_leaves_nothing_behind() {
    if let Some(why) = missing() {
        eprintln!("\n!!! {why}: SKIPPING the compose test !!!\n");
        return;
    }
    let dir = support::tempdir();
    let tag = format!("compose-test-{}", std::process::id());
    let images = [format!("dispatch:{tag}"), format!("dispatch-prometheus:{tag}")];
    let built = Command::new(deploy("docker/build-images.sh"))
        .args([env!("CARGO_BIN_EXE_dispatch"), &images[0], &images[1]])
        .output()
        .unwrap();
    assert!(built.status.success(), "build-images.sh: {}", String::from_utf8_lossy(&built.stderr));
    let (http_port, prometheus_port) = (free_port(), free_port());
    let stack = Stack {
        project: tag.clone(),
        env: vec![
            ("DISPATCH_IMAGE".into(), images[0].clone()),
            ("PROMETHEUS_IMAGE".into(), images[1].clone()),
            ("DISPATCH_STATE".into(), dir.path().display().to_string()),
            ("DISPATCH_HTTP_PORT".into(), http_port.to_string()),
            ("PROMETHEUS_PORT".into(), prometheus_port.to_string()),
        ],
        images,
    };
    let up = stack.compose(&["up", "-d"]);
    assert!(up.status.success(), "compose up: {}", String::from_utf8_lossy(&up.stderr));

    let url = format!("http://127.0.0.1:{http_port}");
    let token = eventually("the admin token", || {
        let out = stack.compose(&["exec", "-T", "orchestrator", "cat", "/data/admin-token"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    let http = support::client_builder().build().unwrap();
    let active = || async {
        let body: Value =
            http.get(format!("{url}/v1/nodes")).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        let nodes = body["nodes"].as_array()?.iter().filter(|n| n["state"] == "ACTIVE").count();
        (nodes == 2).then_some(())
    };
    eventually_async("both worker containers ACTIVE", active).await;

    let run = Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["task", "run", "--server", &url, "--token", &token, "--wait-timeout", "60s", "--"])
        .args(["echo", "hello from a worker container"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && said.contains("hello from a worker container"),
        "{said}{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let targets = format!("http://127.0.0.1:{prometheus_port}/api/v1/targets");
    let up_targets = || async {
        let body: Value = support::get(&targets).await.ok()?.json().await.ok()?;
        let all = body["data"]["activeTargets"].as_array()?.clone();
        (all.len() == 3 && all.iter().all(|t| t["health"] == "up")).then_some(all.len())
    };
    let n = eventually_async("every Prometheus target up", up_targets).await;
    eprintln!("compose: 2 workers ACTIVE, a task ran, {n} targets up in Prometheus");

    let down = stack.compose(&["down", "-v", "--remove-orphans"]);
    assert!(down.status.success(), "compose down: {}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(stack.leftovers(), "", "containers, volumes or networks left behind");
}

/// Polls `check` until it answers (bounded): the containers start on their own time.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

async fn eventually_async<T, F: Future<Output = Option<T>>>(what: &str, check: impl Fn() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
