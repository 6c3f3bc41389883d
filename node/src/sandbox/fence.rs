//! A watchdog beside each job, in a process of its own. A container outlives its worker:
//! if the worker dies or is frozen while a job runs, nothing on the host would stop the
//! job, and once its lease runs out the orchestrator runs the task again elsewhere — two
//! runs at once. So the worker keeps a *hold* file per job saying until when the job may
//! run (its lease, renewed by every answered heartbeat, less a heartbeat of margin), and a
//! small `dispatch sandbox-fence` process, started with the job in its own process group,
//! kills the container when that time passes. It exits once the hold file is gone (the
//! result is stored) or after the kill.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::KillContainerOptions;

use super::{Sandbox, container_name};
use crate::clock::now_ms;

/// How often a fence reads its hold file.
const FENCE_TICK: Duration = Duration::from_millis(100);

impl Sandbox {
    /// Starts fences with this program (`dispatch` itself): `program sandbox-fence …`.
    pub fn with_fence(mut self, program: PathBuf) -> Self {
        self.fence_program = Some(program);
        self
    }

    fn hold_file(&self, job_id: &str) -> PathBuf {
        // Beside the workspaces, not in one: the job cannot touch it.
        self.workspaces.join(format!("{}.hold", container_name(job_id)))
    }

    /// `job_id` may run until `until_ms` (Unix ms); the first hold starts its fence.
    pub fn hold(&self, job_id: &str, until_ms: i64) {
        let path = self.hold_file(job_id);
        let temp = path.with_extension("hold.tmp");
        let written = std::fs::write(&temp, until_ms.to_string()).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            return tracing::warn!(job = %job_id, error = %e, "hold file not written; the job's fence may stop it");
        }
        let Some(program) = &self.fence_program else { return };
        let first = self.fences.lock().unwrap_or_else(|p| p.into_inner()).insert(job_id.to_owned());
        if first {
            let spawned = tokio::process::Command::new(program)
                .args(["sandbox-fence", "--container", &container_name(job_id), "--hold-file"])
                .arg(&path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .process_group(0) // a Ctrl-C to the worker's group must not take the fence with it
                .spawn();
            if let Err(e) = spawned {
                tracing::warn!(job = %job_id, error = %e, "job fence not started");
            }
        }
    }

    /// Whether the job's hold ran out: its fence stopped it (a late renewal cannot hide
    /// that, the fence leaves a mark first), or will.
    pub(super) fn hold_ran_out(&self, job_id: &str) -> bool {
        let hold = self.hold_file(job_id);
        let until = std::fs::read_to_string(&hold).ok().and_then(|t| t.trim().parse::<i64>().ok());
        fence_mark(&hold).exists() || until.is_some_and(|until| now_ms() >= until)
    }

    /// The job is over: its fence may go.
    pub(super) fn unhold(&self, job_id: &str) {
        let hold = self.hold_file(job_id);
        let _ = std::fs::remove_file(fence_mark(&hold));
        let _ = std::fs::remove_file(hold);
        self.fences.lock().unwrap_or_else(|p| p.into_inner()).remove(job_id);
    }
}

/// Left by a fence that stopped its job, beside the hold file.
fn fence_mark(hold_file: &Path) -> PathBuf {
    hold_file.with_extension("fenced")
}

/// `dispatch sandbox-fence`: kills `container` once the time in `hold_file` has passed;
/// returns when the hold file is gone or after the kill.
pub async fn run_fence(container: &str, hold_file: &Path) -> anyhow::Result<()> {
    let docker = Docker::connect_with_local_defaults()?;
    loop {
        let until = match std::fs::read_to_string(hold_file) {
            Ok(text) => text.trim().parse::<i64>().unwrap_or(i64::MIN),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if now_ms() >= until {
            tracing::warn!(container, "its worker did not renew the job's hold in time; stopping it");
            // Marked before the kill: an exit 137 after this is the fence's, whatever the
            // worker writes into the hold later.
            if let Err(e) = std::fs::write(fence_mark(hold_file), until.to_string()) {
                tracing::warn!(container, error = %e, "fence mark not written");
            }
            return stop(&docker, container, hold_file).await;
        }
        tokio::time::sleep(FENCE_TICK).await;
    }
}

/// How long a fence whose hold ran out waits for a container that is not there yet (its
/// worker may be about to start it) before it gives up.
const FENCE_WATCH: Duration = Duration::from_secs(60);

/// Kills the container, and again should it start later: a worker frozen between
/// creating and starting its job starts it when it wakes, after the hold ran out.
/// Done when the container has stopped, or its hold file is gone (the result is stored).
async fn stop(docker: &Docker, container: &str, hold_file: &Path) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + FENCE_WATCH;
    while hold_file.exists() && tokio::time::Instant::now() < give_up {
        let kill = docker.kill_container(container, Some(KillContainerOptions { signal: "KILL".into() })).await;
        let inspected = docker.inspect_container(container, None).await;
        let stopped = inspected.ok().and_then(|c| c.state).is_some_and(|s| {
            s.running != Some(true) && s.status != Some(bollard::models::ContainerStateStatusEnum::CREATED)
        });
        if stopped {
            return Ok(());
        }
        if let Err(e) = kill {
            tracing::debug!(container, error = %e, "fence kill");
        }
        tokio::time::sleep(FENCE_TICK).await;
    }
    Ok(())
}
