//! Tasks, their attempts and job results as the API speaks them.
//! Each type mirrors the domain type of the same name (see `dto/mod.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Queued,
    Dispatched,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// What a task asks for, as accepted by the API (validated, defaults filled in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskSpec {
    pub command: Vec<String>,
    /// Image to run in; the node's configured sandbox image when absent.
    pub image: Option<String>,
    pub network: NetworkPolicy,
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u32>,
    pub pids: u32,
    pub timeout_seconds: u32,
    pub env: BTreeMap<String, String>,
    pub files: BTreeMap<String, String>,
    /// Node labels the task needs (placement constraints).
    pub labels: BTreeMap<String, String>,
    pub account_id: String,
    pub site_id: String,
    /// The ticket this task works for; its events then appear in the ticket's timeline.
    pub ticket_id: Option<String>,
    pub max_attempts: u32,
    /// Retry a run that exited non-zero (by default only lost or refused attempts are retried).
    pub retry_on_failure: bool,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The job ran; its result is the task's (or was superseded by a retry).
    Ran(JobRan),
    /// The node stopped extending the lease (lost, partitioned, crashed).
    Lost,
    /// The node would not run it (no engine, no free slot, bad image).
    Refused(JobRefused),
}

/// How a job that ran ended. (Named variant bodies give client generators one name each.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobRan {
    pub exit_code: Option<i64>,
    pub succeeded: bool,
}

/// Why a node would not run a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobRefused {
    pub reason: String,
}

/// One attempt: a job on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub n: u32,
    pub job_id: String,
    pub node: String,
    pub dispatched_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub outcome: Option<AttemptOutcome>,
}

/// A task as the orchestrator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub state: TaskState,
    pub spec: TaskSpec,
    pub attempts: Vec<Attempt>,
    /// The result of the run that decided the task.
    pub result: Option<JobResult>,
    /// Why the task failed without a result (attempts used up, cancelled before running).
    pub reason: Option<String>,
    pub cancel_requested: bool,
    /// A retry waits until then.
    pub not_before_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// While queued: why no node took it at the last placement round (no active node,
    /// no engine, labels no node carries, every slot busy). Observed, not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// How much network a job gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkPolicy {
    /// No network at all (the default).
    #[default]
    None,
    /// An internal network with no route out.
    Restricted,
}

/// What running a job produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    /// The process's exit code; `None` when it never ran (see `error`).
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Killed by the kernel for using more memory than its limit.
    pub oom_killed: bool,
    /// Killed for running past its timeout.
    pub timed_out: bool,
    /// Stopped because the task was cancelled.
    pub cancelled: bool,
    /// Stopped by its worker, which could not renew the job's lease: the attempt
    /// counts as lost, and the task may run again elsewhere.
    #[serde(default)]
    pub lease_lost: bool,
    /// The sandbox could not run it (no engine, no image, bad spec).
    pub error: Option<String>,
    pub started_ms: i64,
    pub finished_ms: i64,
}

// ------------------------------------------------------------- to and from the domain

impl From<actors::task::TaskState> for TaskState {
    fn from(v: actors::task::TaskState) -> Self {
        match v {
            actors::task::TaskState::Queued => TaskState::Queued,
            actors::task::TaskState::Dispatched => TaskState::Dispatched,
            actors::task::TaskState::Running => TaskState::Running,
            actors::task::TaskState::Succeeded => TaskState::Succeeded,
            actors::task::TaskState::Failed => TaskState::Failed,
            actors::task::TaskState::Cancelled => TaskState::Cancelled,
        }
    }
}

impl From<TaskState> for actors::task::TaskState {
    fn from(v: TaskState) -> Self {
        match v {
            TaskState::Queued => actors::task::TaskState::Queued,
            TaskState::Dispatched => actors::task::TaskState::Dispatched,
            TaskState::Running => actors::task::TaskState::Running,
            TaskState::Succeeded => actors::task::TaskState::Succeeded,
            TaskState::Failed => actors::task::TaskState::Failed,
            TaskState::Cancelled => actors::task::TaskState::Cancelled,
        }
    }
}

impl From<actors::task::TaskSpec> for TaskSpec {
    fn from(v: actors::task::TaskSpec) -> Self {
        let actors::task::TaskSpec {
            command,
            image,
            network,
            memory_bytes,
            cpu_millis,
            pids,
            timeout_seconds,
            env,
            files,
            labels,
            account_id,
            site_id,
            ticket_id,
            max_attempts,
            retry_on_failure,
        } = v;
        TaskSpec {
            command,
            image,
            network: network.into(),
            memory_bytes,
            cpu_millis,
            pids,
            timeout_seconds,
            env,
            files,
            labels,
            account_id,
            site_id,
            ticket_id,
            max_attempts,
            retry_on_failure,
        }
    }
}

impl From<TaskSpec> for actors::task::TaskSpec {
    fn from(v: TaskSpec) -> Self {
        let TaskSpec {
            command,
            image,
            network,
            memory_bytes,
            cpu_millis,
            pids,
            timeout_seconds,
            env,
            files,
            labels,
            account_id,
            site_id,
            ticket_id,
            max_attempts,
            retry_on_failure,
        } = v;
        actors::task::TaskSpec {
            command,
            image,
            network: network.into(),
            memory_bytes,
            cpu_millis,
            pids,
            timeout_seconds,
            env,
            files,
            labels,
            account_id,
            site_id,
            ticket_id,
            max_attempts,
            retry_on_failure,
        }
    }
}

impl From<actors::task::AttemptOutcome> for AttemptOutcome {
    fn from(v: actors::task::AttemptOutcome) -> Self {
        match v {
            actors::task::AttemptOutcome::Ran { exit_code, succeeded } => {
                AttemptOutcome::Ran(JobRan { exit_code, succeeded })
            }
            actors::task::AttemptOutcome::Lost => AttemptOutcome::Lost,
            actors::task::AttemptOutcome::Refused { reason } => AttemptOutcome::Refused(JobRefused { reason }),
        }
    }
}

impl From<AttemptOutcome> for actors::task::AttemptOutcome {
    fn from(v: AttemptOutcome) -> Self {
        match v {
            AttemptOutcome::Ran(JobRan { exit_code, succeeded }) => {
                actors::task::AttemptOutcome::Ran { exit_code, succeeded }
            }
            AttemptOutcome::Lost => actors::task::AttemptOutcome::Lost,
            AttemptOutcome::Refused(JobRefused { reason }) => actors::task::AttemptOutcome::Refused { reason },
        }
    }
}

impl From<actors::task::Attempt> for Attempt {
    fn from(v: actors::task::Attempt) -> Self {
        let actors::task::Attempt { n, job_id, node, dispatched_ms, started_ms, finished_ms, outcome } = v;
        Attempt { n, job_id, node, dispatched_ms, started_ms, finished_ms, outcome: outcome.map(Into::into) }
    }
}

impl From<Attempt> for actors::task::Attempt {
    fn from(v: Attempt) -> Self {
        let Attempt { n, job_id, node, dispatched_ms, started_ms, finished_ms, outcome } = v;
        actors::task::Attempt {
            n,
            job_id,
            node,
            dispatched_ms,
            started_ms,
            finished_ms,
            outcome: outcome.map(Into::into),
        }
    }
}

impl From<actors::task::Task> for Task {
    fn from(v: actors::task::Task) -> Self {
        let actors::task::Task {
            id,
            state,
            spec,
            attempts,
            result,
            reason,
            cancel_requested,
            not_before_ms,
            created_ms,
            updated_ms,
        } = v;
        Task {
            id,
            state: state.into(),
            spec: spec.into(),
            attempts: attempts.into_iter().map(Into::into).collect(),
            result: result.map(Into::into),
            reason,
            cancel_requested,
            not_before_ms,
            created_ms,
            updated_ms,
            waiting: None,
        }
    }
}

impl From<Task> for actors::task::Task {
    fn from(v: Task) -> Self {
        // `waiting` is the dispatcher's observation, not part of the task.
        let Task {
            id,
            state,
            spec,
            attempts,
            result,
            reason,
            cancel_requested,
            not_before_ms,
            created_ms,
            updated_ms,
            waiting: _,
        } = v;
        actors::task::Task {
            id,
            state: state.into(),
            spec: spec.into(),
            attempts: attempts.into_iter().map(Into::into).collect(),
            result: result.map(Into::into),
            reason,
            cancel_requested,
            not_before_ms,
            created_ms,
            updated_ms,
        }
    }
}

impl From<actors::task::NetworkPolicy> for NetworkPolicy {
    fn from(v: actors::task::NetworkPolicy) -> Self {
        match v {
            actors::task::NetworkPolicy::None => NetworkPolicy::None,
            actors::task::NetworkPolicy::Restricted => NetworkPolicy::Restricted,
        }
    }
}

impl From<NetworkPolicy> for actors::task::NetworkPolicy {
    fn from(v: NetworkPolicy) -> Self {
        match v {
            NetworkPolicy::None => actors::task::NetworkPolicy::None,
            NetworkPolicy::Restricted => actors::task::NetworkPolicy::Restricted,
        }
    }
}

impl From<actors::task::JobResult> for JobResult {
    fn from(v: actors::task::JobResult) -> Self {
        let actors::task::JobResult {
            exit_code,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            oom_killed,
            timed_out,
            cancelled,
            lease_lost,
            error,
            started_ms,
            finished_ms,
        } = v;
        JobResult {
            exit_code,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            oom_killed,
            timed_out,
            cancelled,
            lease_lost,
            error,
            started_ms,
            finished_ms,
        }
    }
}

impl From<JobResult> for actors::task::JobResult {
    fn from(v: JobResult) -> Self {
        let JobResult {
            exit_code,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            oom_killed,
            timed_out,
            cancelled,
            lease_lost,
            error,
            started_ms,
            finished_ms,
        } = v;
        actors::task::JobResult {
            exit_code,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            oom_killed,
            timed_out,
            cancelled,
            lease_lost,
            error,
            started_ms,
            finished_ms,
        }
    }
}
