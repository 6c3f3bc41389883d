//! What a restarted worker finds of its own jobs on the engine. Containers outlive the
//! worker process: a job may have run to its end after the worker died, or still be
//! running. A container that ended holds the job's result (exit code and output), which
//! the worker stores and reports, so a job that finished just before a crash is never
//! run again. One still running (or never started) is stopped and reported as lost, so
//! the orchestrator retries it at once instead of waiting out its lease, and the retry
//! cannot overlap it.

use std::collections::HashMap;

use bollard::models::{ContainerState, ContainerStateStatusEnum};
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions, LogsOptions, WaitContainerOptions};
use cluster::proto::JobResult;
use futures_util::StreamExt;

use super::{DRAIN_AFTER_KILL, JOB_LABEL, OWNER_LABEL, Sandbox, SandboxError, container_name, keep};

/// Output kept of a recovered job, per stream: the default cap of a job's output (the
/// job's own cap is not known after a restart).
const RECOVERED_OUTPUT_CAP: usize = 1 << 20;

impl Sandbox {
    /// This worker's leftover job containers, each with the result it holds. The
    /// containers stay until [`Sandbox::release`], once the result is stored.
    pub async fn leftover_results(&self) -> Result<Vec<(String, JobResult)>, SandboxError> {
        let owner = format!("{OWNER_LABEL}={}", self.workspaces.display());
        let filters = HashMap::from([("label".to_owned(), vec![owner])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let mut found = Vec::new();
        for container in self.docker.list_containers(Some(options)).await? {
            let Some(job_id) = container.labels.and_then(|mut l| l.remove(JOB_LABEL)) else { continue };
            let result = self.result_of_leftover(&job_id).await?;
            found.push((job_id, result));
        }
        Ok(found)
    }

    /// The result a leftover container holds; one that has not ended is stopped first.
    async fn result_of_leftover(&self, job_id: &str) -> Result<JobResult, SandboxError> {
        let name = container_name(job_id);
        let mut state = self.state_of(&name).await?;
        let mut stopped_here = false;
        if !has_ended(&state) {
            self.kill(&name).await;
            let mut waits = self.docker.wait_container(&name, None::<WaitContainerOptions>);
            let _ = tokio::time::timeout(DRAIN_AFTER_KILL, waits.next()).await;
            // Read again: it may have run to its end just before the kill landed.
            state = self.state_of(&name).await?;
            stopped_here = true;
        }
        let fenced = state.exit_code == Some(137) && self.hold_ran_out(job_id);
        if let Some(why) = leftover_lost(&state, stopped_here, fenced) {
            return Ok(lost(why));
        }
        let (started_ms, finished_ms) = run_times(&state);
        let mut result = JobResult {
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            started_ms,
            finished_ms,
            ..JobResult::default()
        };
        let (stdout, stderr) = self.output(&name, &mut result).await;
        result.stdout = String::from_utf8_lossy(&stdout).into_owned();
        result.stderr = String::from_utf8_lossy(&stderr).into_owned();
        Ok(result)
    }

    async fn state_of(&self, name: &str) -> Result<ContainerState, SandboxError> {
        let inspected = self.docker.inspect_container(name, None::<InspectContainerOptions>).await?;
        Ok(inspected.state.unwrap_or_default())
    }

    /// The output an ended container logged, capped and flagged as a run's is.
    async fn output(&self, name: &str, result: &mut JobResult) -> (Vec<u8>, Vec<u8>) {
        use bollard::container::LogOutput;
        let options = LogsOptions { stdout: true, stderr: true, ..Default::default() };
        let mut logs = self.docker.logs(name, Some(options));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(Ok(item)) = logs.next().await {
            match item {
                LogOutput::StdOut { message } => {
                    keep(&mut stdout, &message, RECOVERED_OUTPUT_CAP, &mut result.stdout_truncated)
                }
                LogOutput::StdErr { message } => {
                    keep(&mut stderr, &message, RECOVERED_OUTPUT_CAP, &mut result.stderr_truncated)
                }
                _ => {}
            }
        }
        (stdout, stderr)
    }
}

fn has_ended(state: &ContainerState) -> bool {
    state.exit_code.is_some()
        && matches!(state.status, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD))
}

/// Why a leftover's run counts as lost (retried), or `None` when its exit is its own
/// result. `stopped_here`: it had not ended when found and was killed; `fenced`: it
/// exited 137 after its hold ran out. A run that ended on its own stands even when a
/// kill raced it, or the task would run twice.
fn leftover_lost(state: &ContainerState, stopped_here: bool, fenced: bool) -> Option<&'static str> {
    if !has_ended(state) {
        Some("its worker restarted before it ended; it was stopped")
    } else if stopped_here && state.exit_code == Some(137) {
        Some("its worker restarted while it ran; it was stopped")
    } else if fenced {
        Some("its worker was gone when its lease ran out; its fence stopped it")
    } else {
        None
    }
}

/// A run stopped for want of a lease: the orchestrator retries it.
fn lost(why: &str) -> JobResult {
    JobResult { lease_lost: true, error: Some(why.into()), ..JobResult::default() }
}

/// Milliseconds since the epoch of one of Docker's RFC 3339 times (0 when absent).
/// When an ended container started and finished (Unix ms). Docker stamps `StartedAt`
/// when its daemon hears the start went through and `FinishedAt` from the exit itself,
/// so a job that exits within milliseconds can "finish" before it "started" (a test run
/// under load saw 2 ms): a run never ends before it starts.
fn run_times(state: &ContainerState) -> (i64, i64) {
    let started = unix_ms(state.started_at.as_deref());
    (started, unix_ms(state.finished_at.as_deref()).max(started))
}

fn unix_ms(at: Option<&str>) -> i64 {
    let parsed = at.and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
    parsed.map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: ContainerStateStatusEnum, exit_code: Option<i64>) -> ContainerState {
        ContainerState { status: Some(status), exit_code, ..ContainerState::default() }
    }

    #[test]
    fn a_run_never_ends_before_it_starts() {
        let at = |started: &str, finished: &str| ContainerState {
            started_at: Some(started.into()),
            finished_at: Some(finished.into()),
            ..ContainerState::default()
        };
        let cases = [
            (at("2026-12-07T15:00:00.512Z", "2026-12-07T15:00:00.510Z"), (1796655600512, 1796655600512)),
            (at("2026-12-07T15:00:00.512Z", "2026-12-07T15:00:01.000Z"), (1796655600512, 1796655601000)),
            (ContainerState::default(), (0, 0)),
        ];
        for (state, times) in cases {
            assert_eq!(run_times(&state), times, "{state:?}");
        }
    }

    #[test]
    fn a_leftover_run_is_lost_only_when_something_of_ours_stopped_it() {
        use ContainerStateStatusEnum::{CREATED, EXITED, RUNNING};
        let cases = [
            // (state after the restart looked, killed here, fence's hold ran out, lost?)
            (state(EXITED, Some(0)), false, false, false),
            (state(EXITED, Some(3)), false, false, false),
            (state(EXITED, Some(137)), false, false, false),
            (state(EXITED, Some(137)), false, true, true),
            // Found running and killed: a kill that raced the job's own clean end
            // leaves its result standing (the task must not run again).
            (state(EXITED, Some(0)), true, false, false),
            (state(EXITED, Some(1)), true, false, false),
            (state(EXITED, Some(137)), true, false, true),
            (state(RUNNING, None), true, false, true),
            (state(CREATED, Some(0)), true, false, true),
        ];
        for (i, (st, stopped_here, fenced, lost)) in cases.iter().enumerate() {
            assert_eq!(leftover_lost(st, *stopped_here, *fenced).is_some(), *lost, "case {i}: {st:?}");
        }
    }
}
