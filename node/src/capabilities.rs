//! What a worker host reports about itself: CPU, memory, disk, platform, and the
//! local Docker Engine (version and images) or its absence.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use actors::node::Capabilities;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOCKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads this host's capabilities; `data_dir` is where job workspaces will live.
pub async fn detect(data_dir: &Path, labels: BTreeMap<String, String>) -> Capabilities {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    let docker = docker_get("/version").await;
    let images = match docker {
        Some(_) => docker_get("/images/json").await.map(|v| image_tags(&v)).unwrap_or_default(),
        None => Vec::new(),
    };
    Capabilities {
        hostname: read("/proc/sys/kernel/hostname"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: meminfo_total(&read("/proc/meminfo")),
        disk_bytes: rustix::fs::statvfs(data_dir).map_or(0, |s| s.f_bavail * s.f_frsize),
        arch: std::env::consts::ARCH.into(),
        os: format!("{} {}", std::env::consts::OS, read("/proc/sys/kernel/osrelease")).trim().to_owned(),
        docker_version: docker.and_then(|v| v["Version"].as_str().map(str::to_owned)),
        images,
        labels,
        inference: false,
    }
}

fn meminfo_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn image_tags(images: &serde_json::Value) -> Vec<String> {
    let mut tags: Vec<String> = images
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["RepoTags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .filter(|t| t != "<none>:<none>")
        .collect();
    tags.sort();
    tags
}

/// One GET to the local Docker Engine API over its Unix socket; None when no engine answers.
async fn docker_get(path: &str) -> Option<serde_json::Value> {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(&socket).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        if !response.starts_with(b"HTTP/1.0 200") && !response.starts_with(b"HTTP/1.1 200") {
            return None;
        }
        serde_json::from_slice(&response[split + 4..]).ok()
    };
    tokio::time::timeout(DOCKER_TIMEOUT, exchange).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_image_tags_are_read_from_what_the_host_says() {
        assert_eq!(meminfo_total("MemFree: 1 kB\nMemTotal:       2048 kB\n"), 2 * 1024 * 1024);
        assert_eq!(meminfo_total("garbage"), 0);
        let images =
            serde_json::json!([{"RepoTags": ["b:1", "<none>:<none>"]}, {"RepoTags": null}, {"RepoTags": ["a:2"]}]);
        assert_eq!(image_tags(&images), vec!["a:2".to_owned(), "b:1".to_owned()]);
    }
}
