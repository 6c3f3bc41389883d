//! Runs jobs in Docker through bollard, one locked-down container per job: no network
//! (or an internal one with no route out), memory without swap, a CPU quota, a pids
//! limit, a read-only root, every capability dropped, no new privileges, a tmpfs
//! `/tmp`, and the job's own workspace at `/workspace`. Output is capped and flagged
//! when cut; the timeout kills; the container and workspace are removed once the
//! worker has stored the result (until then the container holds it: see [`recover`]).
//!
//! No registry is assumed: the default image is built here from the host's static
//! busybox (Debian's `busybox-static`), imported through the engine API as a root
//! filesystem tar.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::now_ms;
use actors::task::{RESERVED_ENV, valid_workspace_path};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptionsBuilder, KillContainerOptions,
    ListContainersOptions, RemoveContainerOptions,
};
use cluster::proto::{JobResult, JobSpec, NetworkPolicy};
use futures_util::StreamExt;
use tokio::sync::watch;

mod fence;
mod recover;

pub use fence::run_fence;

/// The image jobs run in unless they or the node configuration name another.
pub const DEFAULT_IMAGE: &str = "dispatch-sandbox:busybox";
/// The internal network of `restricted` jobs.
pub const RESTRICTED_NETWORK: &str = "dispatch-restricted";
/// Label on every job container, so leftovers can be found.
pub const JOB_LABEL: &str = "dispatch.job";
/// Label naming the worker a job container belongs to (its workspaces directory, unique
/// on a host), so a restarted worker takes back its own leftovers and no one else's.
pub const OWNER_LABEL: &str = "dispatch.worker";
/// Jobs run as `nobody`.
const SANDBOX_USER: &str = "65534:65534";
/// After a kill, how long the output may take to end.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(5);

/// Why the sandbox itself failed (as opposed to the job).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("Docker Engine: {0}")]
    Engine(#[from] bollard::errors::Error),
    #[error("image {0} is not on this host and there is no registry to pull it from")]
    ImageMissing(String),
    #[error("{0} is not a static busybox (install Debian's busybox-static)")]
    NotStatic(PathBuf),
    /// The default image is missing and cannot be built here.
    #[error(
        "the default sandbox image {0} cannot be built: {1}; install Debian's busybox-static, \
         start the worker with --sandbox-busybox PATH to a static busybox, or run tasks with --image NAME \
         of an image the engine has (`docker images`)"
    )]
    NoDefaultImage(String, Box<SandboxError>),
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("workspace: {0}")]
    Io(#[from] std::io::Error),
}

/// A Docker-backed job runner.
pub struct Sandbox {
    docker: Docker,
    workspaces: PathBuf,
    busybox: PathBuf,
    /// The image built from `busybox` when a job names it and the engine lacks it
    /// ([`DEFAULT_IMAGE`] unless a test names one that is never present).
    default_image: String,
    image_build: tokio::sync::Mutex<()>,
    /// Bytes a job's workspace may hold (files and directories, counted as written).
    workspace_quota: u64,
    /// What runs each job's fence (`dispatch` itself), if fences are wanted.
    fence_program: Option<PathBuf>,
    /// Jobs whose fence has been started.
    fences: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// How much a job's `/workspace` may hold unless configured otherwise.
pub const WORKSPACE_QUOTA: u64 = 256 << 20;
/// How often a running job's workspace is measured. Like Kubernetes' emptyDir
/// `sizeLimit`, the quota is enforced by measuring and killing: a job can overshoot by
/// what it writes within one interval, never by more.
const WORKSPACE_CHECK: Duration = Duration::from_millis(250);
/// Entries a workspace may hold; past this it counts as over its quota (no inode floods).
const WORKSPACE_ENTRIES: usize = 100_000;

impl Sandbox {
    /// Connects to the local engine (negotiating its API version). Fails when no engine answers.
    pub async fn connect(workspaces: PathBuf, busybox: PathBuf) -> Result<Self, SandboxError> {
        let docker = Docker::connect_with_local_defaults()?.negotiate_version().await?;
        docker.ping().await?;
        std::fs::create_dir_all(&workspaces)?;
        // Bind mounts need absolute paths.
        let workspaces = std::fs::canonicalize(&workspaces)?;
        Ok(Sandbox {
            docker,
            workspaces,
            busybox,
            default_image: DEFAULT_IMAGE.to_owned(),
            image_build: tokio::sync::Mutex::new(()),
            workspace_quota: WORKSPACE_QUOTA,
            fence_program: None,
            fences: Default::default(),
        })
    }

    /// Another workspace quota (bytes).
    pub fn with_workspace_quota(mut self, bytes: u64) -> Self {
        self.workspace_quota = bytes;
        self
    }

    /// The engine's version, for the node's capabilities.
    pub async fn engine_version(&self) -> Option<String> {
        self.docker.version().await.ok().and_then(|v| v.version)
    }

    /// Image tags present on the engine.
    pub async fn images(&self) -> Vec<String> {
        let images = self.docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await;
        let mut tags: Vec<String> = images.into_iter().flatten().flat_map(|i| i.repo_tags).collect();
        tags.retain(|t| t != "<none>:<none>");
        tags.sort();
        tags
    }

    /// The same sandbox, building `image` from busybox instead of [`DEFAULT_IMAGE`].
    pub fn with_default_image(mut self, image: &str) -> Self {
        self.default_image = image.to_owned();
        self
    }

    /// Why the default image cannot be had here, if it cannot: it is not on the engine
    /// and the busybox it is built from is missing or not static. Said when the worker
    /// starts, so that tasks do not each fail later with the same surprise.
    pub async fn default_image_problem(&self) -> Option<String> {
        if self.docker.inspect_image(&self.default_image).await.is_ok() {
            return None;
        }
        let busybox = self.busybox.clone();
        let checked = tokio::task::spawn_blocking(move || -> Result<(), SandboxError> {
            let binary =
                std::fs::read(&busybox).map_err(|e| SandboxError::Invalid(format!("{}: {e}", busybox.display())))?;
            if is_static_elf(&binary) { Ok(()) } else { Err(SandboxError::NotStatic(busybox)) }
        })
        .await
        .ok()?;
        checked.err().map(|e| SandboxError::NoDefaultImage(self.default_image.clone(), Box::new(e)).to_string())
    }

    /// Makes sure `image` exists, building the default one when it is missing.
    pub async fn ensure_image(&self, image: &str) -> Result<(), SandboxError> {
        let _one_build = self.image_build.lock().await;
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        if image != self.default_image {
            return Err(SandboxError::ImageMissing(image.to_owned()));
        }
        let busybox = self.busybox.clone();
        let rootfs = tokio::task::spawn_blocking(move || busybox_rootfs(&busybox))
            .await
            .map_err(|e| SandboxError::Invalid(e.to_string()))?
            .map_err(|e| SandboxError::NoDefaultImage(image.to_owned(), Box::new(e)))?;
        let (repo, tag) = image.split_once(':').unwrap_or((image, "latest"));
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(vec!["ENV PATH=/bin".into(), "WORKDIR /workspace".into()])
            .build();
        let mut progress = self.docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
        while let Some(step) = progress.next().await {
            step?;
        }
        tracing::info!(image, "built the sandbox image from the host's busybox");
        Ok(())
    }

    async fn ensure_restricted_network(&self) -> Result<(), SandboxError> {
        if self
            .docker
            .inspect_network(RESTRICTED_NETWORK, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: RESTRICTED_NETWORK.into(),
            internal: Some(true),
            driver: Some("bridge".into()),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Another job created it first.
            Err(_)
                if self
                    .docker
                    .inspect_network(RESTRICTED_NETWORK, None::<bollard::query_parameters::InspectNetworkOptions>)
                    .await
                    .is_ok() =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Job ids whose containers are still on the engine (none, once every run has returned).
    pub async fn leftover_containers(&self) -> Result<Vec<String>, SandboxError> {
        let filters = HashMap::from([("label".to_owned(), vec![JOB_LABEL.to_owned()])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await?;
        Ok(list.into_iter().filter_map(|c| c.labels?.remove(JOB_LABEL)).collect())
    }

    /// Runs one job to the end and removes its container. Never fails: a sandbox
    /// problem is reported in the result.
    pub async fn run(&self, job: &JobSpec, cancel: watch::Receiver<bool>) -> JobResult {
        let result = self.run_kept(job, cancel).await;
        self.release(&job.job_id).await;
        result
    }

    /// Runs one job to the end, leaving its (stopped) container until [`Sandbox::release`]:
    /// should the worker die before storing the result, the container still holds it.
    pub async fn run_kept(&self, job: &JobSpec, cancel: watch::Receiver<bool>) -> JobResult {
        let started_ms = now_ms();
        let name = container_name(&job.job_id);
        let workspace = self.workspaces.join(&name);
        let mut result = match self.run_in(job, &name, &workspace, cancel).await {
            Ok(r) => r,
            Err(e) => JobResult { error: Some(e.to_string()), ..JobResult::default() },
        };
        result.started_ms = started_ms;
        result.finished_ms = now_ms();
        // Killed by its fence while this worker was frozen: lost, as the lease is.
        if result.exit_code == Some(137) && !result.cancelled && !result.timed_out && self.hold_ran_out(&job.job_id) {
            result.lease_lost = true;
        }
        result
    }

    /// Removes a job's container and workspace: its result is stored elsewhere now.
    pub async fn release(&self, job_id: &str) {
        let name = container_name(job_id);
        let remove = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(e) = self.docker.remove_container(&name, Some(remove)).await
            && !matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
        {
            tracing::warn!(job = %job_id, error = %e, "job container not removed");
        }
        let _ = tokio::fs::remove_dir_all(self.workspaces.join(&name)).await;
        self.unhold(job_id);
    }

    async fn run_in(
        &self,
        job: &JobSpec,
        name: &str,
        workspace: &Path,
        cancel: watch::Receiver<bool>,
    ) -> Result<JobResult, SandboxError> {
        check(job)?;
        self.ensure_image(&job.image).await?;
        let network = match job.network {
            NetworkPolicy::None => "none",
            NetworkPolicy::Restricted => {
                self.ensure_restricted_network().await?;
                RESTRICTED_NETWORK
            }
        };
        write_workspace(workspace, &job.files).await?;
        // A container left by a crash under this name is an earlier run of this very job.
        let _ = self
            .docker
            .remove_container(name, Some(RemoveContainerOptions { force: true, ..Default::default() }))
            .await;
        let body = container_body(job, network, workspace, &self.workspaces);
        let options = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
        self.docker.create_container(Some(options), body).await?;
        let attach = AttachContainerOptions { stream: true, stdout: true, stderr: true, ..Default::default() };
        let mut output = self.docker.attach_container(name, Some(attach)).await?.output;
        // Stopped while it was being set up (a worker frozen before the start, whose lease
        // ran out meanwhile): it never starts; the orchestrator has run it elsewhere.
        if *cancel.borrow() {
            return Ok(JobResult { cancelled: true, ..JobResult::default() });
        }
        self.docker.start_container(name, None::<bollard::query_parameters::StartContainerOptions>).await?;

        let (mut result, stdout, stderr) = self.supervise(job, name, workspace, &mut output, cancel).await;
        // The output ended: the process is gone (or was killed). Its exit code and OOM flag.
        let mut waits = self.docker.wait_container(name, None::<bollard::query_parameters::WaitContainerOptions>);
        let _ = tokio::time::timeout(DRAIN_AFTER_KILL, waits.next()).await;
        let state = self
            .docker
            .inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>)
            .await?
            .state;
        result.exit_code = state.as_ref().and_then(|s| s.exit_code);
        result.oom_killed = state.and_then(|s| s.oom_killed).unwrap_or(false);
        result.stdout = String::from_utf8_lossy(&stdout).into_owned();
        result.stderr = String::from_utf8_lossy(&stderr).into_owned();
        Ok(result)
    }

    /// Collects a started job's output until it ends; kills it at its timeout, on
    /// cancel, or when its workspace outgrows the quota.
    async fn supervise(
        &self,
        job: &JobSpec,
        name: &str,
        workspace: &Path,
        output: &mut (impl futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin),
        mut cancel: watch::Receiver<bool>,
    ) -> (JobResult, Vec<u8>, Vec<u8>) {
        let mut result = JobResult::default();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let deadline = tokio::time::sleep(Duration::from_millis(job.timeout_ms));
        tokio::pin!(deadline);
        let mut measure = tokio::time::interval(WORKSPACE_CHECK);
        let mut killed_at: Option<tokio::time::Instant> = None;
        loop {
            let drain_limit = async {
                match killed_at {
                    Some(t) => tokio::time::sleep_until(t + DRAIN_AFTER_KILL).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(LogOutput::StdOut { message })) => keep(&mut stdout, &message, job.output_cap, &mut result.stdout_truncated),
                    Some(Ok(LogOutput::StdErr { message })) => keep(&mut stderr, &message, job.output_cap, &mut result.stderr_truncated),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                _ = &mut deadline, if killed_at.is_none() => {
                    result.timed_out = true;
                    killed_at = Some(self.kill(name).await);
                }
                changed = cancel.changed(), if killed_at.is_none() => {
                    if changed.is_err() || *cancel.borrow() {
                        result.cancelled = true;
                        killed_at = Some(self.kill(name).await);
                    }
                }
                _ = measure.tick(), if killed_at.is_none() => {
                    if let Some(over) = over_quota(workspace, self.workspace_quota).await {
                        result.error = Some(over);
                        killed_at = Some(self.kill(name).await);
                    }
                }
                _ = drain_limit => break,
            }
        }
        (result, stdout, stderr)
    }

    async fn kill(&self, name: &str) -> tokio::time::Instant {
        let options = KillContainerOptions { signal: "KILL".into() };
        if let Err(e) = self.docker.kill_container(name, Some(options)).await {
            tracing::debug!(container = name, error = %e, "kill");
        }
        tokio::time::Instant::now()
    }
}

impl crate::worker::jobs::Executor for Sandbox {
    fn run(&self, job: JobSpec, cancel: watch::Receiver<bool>) -> crate::worker::jobs::JobRun<'_> {
        Box::pin(async move { Sandbox::run_kept(self, &job, cancel).await })
    }

    fn release<'a>(&'a self, job_id: &'a str) -> crate::worker::jobs::Release<'a> {
        Box::pin(Sandbox::release(self, job_id))
    }

    fn hold(&self, job_id: &str, until_ms: i64) {
        Sandbox::hold(self, job_id, until_ms);
    }
}

/// The container a job runs in: named after the job, so a rerun of the very same job
/// finds what an earlier run left.
fn container_name(job_id: &str) -> String {
    format!("dispatch-job-{}", job_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"))
}

/// Why `dir` is over `quota` bytes (or over [`WORKSPACE_ENTRIES`] entries), if it is.
async fn over_quota(dir: &Path, quota: u64) -> Option<String> {
    let dir = dir.to_owned();
    let measured = tokio::task::spawn_blocking(move || {
        let (mut bytes, mut entries, mut pending) = (0u64, 0usize, vec![dir]);
        while let Some(d) = pending.pop() {
            let Ok(list) = std::fs::read_dir(&d) else { continue };
            for entry in list.flatten() {
                entries += 1;
                if entries > WORKSPACE_ENTRIES {
                    return (bytes, entries);
                }
                let Ok(meta) = entry.metadata() else { continue };
                bytes = bytes.saturating_add(std::os::unix::fs::MetadataExt::blocks(&meta) * 512);
                if meta.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
        (bytes, entries)
    });
    let (bytes, entries) = measured.await.ok()?;
    if bytes > quota {
        Some(format!("the job's workspace grew past its quota of {quota} bytes and the job was stopped"))
    } else if entries > WORKSPACE_ENTRIES {
        Some(format!("the job's workspace holds more than {WORKSPACE_ENTRIES} entries and the job was stopped"))
    } else {
        None
    }
}

/// Appends up to `cap` bytes in all, flagging what is cut.
fn keep(buf: &mut Vec<u8>, bytes: &[u8], cap: usize, truncated: &mut bool) {
    let room = cap.saturating_sub(buf.len());
    if bytes.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn check(job: &JobSpec) -> Result<(), SandboxError> {
    let bad = |m: String| Err(SandboxError::Invalid(m));
    if job.command.is_empty() {
        return bad("empty command".into());
    }
    if let Some(p) = job.files.keys().find(|p| !valid_workspace_path(p)) {
        return bad(format!("workspace path {p:?} must be relative, without '..'"));
    }
    if let Some(k) = job.env.keys().find(|k| RESERVED_ENV.contains(&k.as_str()) || k.is_empty() || k.contains('=')) {
        return bad(format!("env name {k:?} is reserved or invalid"));
    }
    Ok(())
}

async fn write_workspace(dir: &Path, files: &std::collections::BTreeMap<String, String>) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    let _ = tokio::fs::remove_dir_all(dir).await;
    tokio::fs::create_dir_all(dir).await?;
    // The job runs as nobody and owns nothing else: its workspace is open to it.
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).await?;
    for (path, content) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
            tokio::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777)).await?;
        }
        tokio::fs::write(&target, content).await?;
        tokio::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).await?;
    }
    Ok(())
}

/// A root filesystem with the static busybox, its applets as links, and a passwd
/// that knows `nobody`.
fn busybox_rootfs(busybox: &Path) -> Result<Vec<u8>, SandboxError> {
    let binary = std::fs::read(busybox).map_err(|e| SandboxError::Invalid(format!("{}: {e}", busybox.display())))?;
    if !is_static_elf(&binary) {
        return Err(SandboxError::NotStatic(busybox.to_owned()));
    }
    let list = std::process::Command::new(busybox).arg("--list").output()?;
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |path: &str, mode: u32, tar: &mut tar::Builder<Vec<u8>>| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        tar.append_data(&mut h, path, std::io::empty())
    };
    for (path, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("workspace", 0o777),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
    ] {
        dir(path, mode, &mut tar)?;
    }
    let file = |path: &str, mode: u32, bytes: &[u8], tar: &mut tar::Builder<Vec<u8>>| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, path, bytes)
    };
    file("bin/busybox", 0o755, &binary, &mut tar)?;
    file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/workspace:/bin/sh\n",
        &mut tar,
    )?;
    file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n", &mut tar)?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/')) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    Ok(tar.into_inner()?)
}

/// An ELF executable without an interpreter (PT_INTERP): it needs no libc on the image.
fn is_static_elf(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| bytes.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else { return false };
    (0..phnum).all(|i| {
        let at = phoff as usize + i * phentsize;
        bytes.get(at..at + 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3)
    })
}

/// The container a job runs in: read-only root, no capabilities, no new privileges,
/// its limits, the workspace bind-mounted, and only the job's own environment.
fn container_body(job: &JobSpec, network: &str, workspace: &Path, owner: &Path) -> ContainerCreateBody {
    let mut env: Vec<String> = job.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend([
        format!("DISPATCH_TASK_ID={}", job.task_id),
        format!("DISPATCH_JOB_ID={}", job.job_id),
        "DISPATCH_WORKSPACE=/workspace".to_owned(),
        "PATH=/bin:/usr/bin:/sbin:/usr/sbin".to_owned(),
        "HOME=/workspace".to_owned(),
    ]);
    let memory = job.memory_bytes as i64;
    let host = HostConfig {
        network_mode: Some(network.into()),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(i64::from(job.cpu_millis) * 1_000_000),
        pids_limit: Some(i64::from(job.pids)),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        tmpfs: Some(HashMap::from([("/tmp".into(), "rw,nosuid,nodev,size=64m".into())])),
        binds: Some(vec![format!("{}:/workspace:rw", workspace.display())]),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(job.image.clone()),
        cmd: Some(job.command.clone()),
        env: Some(env),
        working_dir: Some("/workspace".into()),
        user: Some(SANDBOX_USER.into()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        labels: Some(HashMap::from([
            (JOB_LABEL.into(), job.job_id.clone()),
            (OWNER_LABEL.into(), owner.display().to_string()),
        ])),
        host_config: Some(host),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_flagged() {
        let (mut buf, mut cut) = (Vec::new(), false);
        keep(&mut buf, b"hello ", 8, &mut cut);
        assert!(!cut);
        keep(&mut buf, b"world", 8, &mut cut);
        assert_eq!((buf.as_slice(), cut), (&b"hello wo"[..], true));
    }

    #[test]
    fn only_static_elf_binaries_are_accepted() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b"\x7fELF\x02"));
        if let Ok(sh) = std::fs::read("/bin/sh") {
            assert!(!is_static_elf(&sh), "/bin/sh is dynamically linked on Debian");
        }
    }
}
