//! Docker's own record of job containers: what an outside observer saw run, to check
//! that no task ran to the end twice and no two attempts of a task overlapped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// Docker's own event stream of job containers, watched for the whole run (the engine
/// keeps only its last 256 events, so asking afterwards would miss some).
pub struct DockerEvents {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl DockerEvents {
    pub fn watch() -> DockerEvents {
        use std::io::BufRead;
        let mut child = std::process::Command::new("docker")
            .args(["events", "--filter", "type=container", "--filter", "label=dispatch.job", "--format", "{{json .}}"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || out.lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        DockerEvents { child, lines }
    }

    /// Every event so far: a marker container is made and removed, and events up to
    /// its removal are read (the engine sends them in order).
    pub fn collect(self) -> Vec<Value> {
        let marker = format!("events-marker-{}", super::key());
        let made = std::process::Command::new("docker")
            .args(["create", "--label", &format!("dispatch.job={marker}"), "dispatch-sandbox:busybox", "true"])
            .output()
            .unwrap();
        assert!(made.status.success(), "docker create: {}", String::from_utf8_lossy(&made.stderr));
        let id = String::from_utf8_lossy(&made.stdout).trim().to_owned();
        assert!(std::process::Command::new("docker").args(["rm", &id]).output().unwrap().status.success());
        let mut events = Vec::new();
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(30)).expect("docker events ended early");
            let e: Value = serde_json::from_str(&line).unwrap();
            if e["Actor"]["Attributes"]["dispatch.job"] == marker.as_str() && e["Action"] == "destroy" {
                return events;
            }
            events.push(e);
        }
    }
}

impl Drop for DockerEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Docker's record of this run's job containers: each task's jobs ran one after
/// another, at most one of them ran to a clean end, and none is left.
pub fn check_jobs_in_docker(tasks: &[String], events: &[Value]) -> usize {
    // task → job → (start, die, exit code)
    type Runs = BTreeMap<String, (Option<u64>, Option<u64>, Option<String>)>;
    let mut jobs: BTreeMap<&str, Runs> = BTreeMap::new();
    for e in events {
        let attrs = &e["Actor"]["Attributes"];
        let job = attrs["dispatch.job"].as_str().unwrap_or_default();
        let Some(task) = tasks.iter().find(|t| job.starts_with(&format!("{t}/"))) else { continue };
        let entry = jobs.entry(task.as_str()).or_default().entry(job.to_owned()).or_default();
        let at = e["timeNano"].as_u64();
        match e["Action"].as_str() {
            Some("start") => entry.0 = at,
            Some("die") => (entry.1, entry.2) = (at, attrs["exitCode"].as_str().map(str::to_owned)),
            _ => {}
        }
    }
    for (task, runs) in &jobs {
        let clean = runs.values().filter(|r| r.2.as_deref() == Some("0")).count();
        assert!(clean <= 1, "task {task} ran to the end {clean} times: {runs:?}");
        let mut spans: Vec<(u64, u64)> = runs.values().filter_map(|r| Some((r.0?, r.1.unwrap_or(u64::MAX)))).collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "task {task}'s attempts overlapped: {runs:?}");
    }
    let left = std::process::Command::new("docker")
        .args(["ps", "-a", "--filter", "label=dispatch.job", "--format", "{{.Label \"dispatch.job\"}}"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    let ours: Vec<&str> = left.lines().filter(|j| tasks.iter().any(|t| j.starts_with(&format!("{t}/")))).collect();
    assert!(ours.is_empty(), "job containers left behind: {ours:?}");
    jobs.values().map(BTreeMap::len).sum()
}

/// Whether tasks can run here: a Docker Engine and the busybox the default image is built from.
pub fn tasks_can_run(what: &str) -> bool {
    let engine = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let busybox = std::path::Path::new("/bin/busybox").exists();
    if !(engine && busybox) {
        eprintln!("\n!!! no Docker Engine answers or no /bin/busybox (busybox-static): {what} run WITHOUT tasks !!!\n");
    }
    engine && busybox
}
