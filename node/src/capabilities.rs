//! What a worker host reports about itself: CPU, memory, disk, platform, and the
//! local Docker Engine (version and images) or its absence.

use cluster::proto::Capabilities;
use std::collections::BTreeMap;
use std::path::Path;

use crate::sandbox::Sandbox;

/// Reads this host's capabilities; `data_dir` is where job workspaces live, and
/// `sandbox` the container engine jobs would run on (None: no engine answered), and
/// `inference` whether the host has a local inference runtime (as its operator says).
pub async fn detect(
    data_dir: &Path,
    labels: BTreeMap<String, String>,
    sandbox: Option<&Sandbox>,
    inference: bool,
) -> Capabilities {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    let (docker_version, images) = match sandbox {
        Some(s) => (s.engine_version().await, s.images().await),
        None => (None, Vec::new()),
    };
    Capabilities {
        hostname: read("/proc/sys/kernel/hostname"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: meminfo_total(&read("/proc/meminfo")),
        disk_bytes: rustix::fs::statvfs(data_dir).map_or(0, |s| s.f_bavail * s.f_frsize),
        arch: std::env::consts::ARCH.into(),
        os: format!("{} {}", std::env::consts::OS, read("/proc/sys/kernel/osrelease")).trim().to_owned(),
        docker_version,
        images,
        labels,
        inference,
    }
}

fn meminfo_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_what_the_host_says() {
        assert_eq!(meminfo_total("MemFree: 1 kB\nMemTotal:       2048 kB\n"), 2 * 1024 * 1024);
        assert_eq!(meminfo_total("garbage"), 0);
    }
}
