//! A task's life as pure functions: `decide(task, command) → events` and
//! `apply(task, event) → task`.
//!
//! ```text
//! QUEUED ──dispatch──► DISPATCHED ──worker started it──► RUNNING ──result──► SUCCEEDED | FAILED
//!   ▲                      │                               │
//!   └── retry (node lost, lease expired, refused; or a failed run when asked) ◄─┘
//! any open state ──cancel──► CANCELLED (a running job is killed first)
//! ```
//!
//! Every attempt is a job `<task>/<n>` on one node with a lease. Attempts are only
//! ever appended to; a late answer for an attempt already closed changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job::{JobResult, NetworkPolicy};

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Queued,
    Dispatched,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    /// The state's wire and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "QUEUED",
            TaskState::Dispatched => "DISPATCHED",
            TaskState::Running => "RUNNING",
            TaskState::Succeeded => "SUCCEEDED",
            TaskState::Failed => "FAILED",
            TaskState::Cancelled => "CANCELLED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Dispatched, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    /// No further change is possible.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled)
    }
}

/// What a task asks for, as accepted by the API (validated, defaults filled in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The job ran; its result is the task's (or was superseded by a retry).
    Ran { exit_code: Option<i64>, succeeded: bool },
    /// The node stopped extending the lease (lost, partitioned, crashed).
    Lost,
    /// The node would not run it (no engine, no free slot, bad image).
    Refused { reason: String },
}

/// One attempt: a job on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Task {
    /// The attempt in progress, if any.
    pub fn current(&self) -> Option<&Attempt> {
        self.attempts.last().filter(|a| a.outcome.is_none())
    }
}

/// Something that happened to a task. Stored in the log as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskEvent {
    Created { spec: TaskSpec },
    Dispatched { attempt: u32, node: String },
    Started { attempt: u32 },
    Finished { attempt: u32, result: JobResult, retry_at: Option<i64> },
    AttemptLost { attempt: u32, retry_at: Option<i64> },
    AttemptRefused { attempt: u32, reason: String, retry_at: Option<i64> },
    CancelRequested,
    Cancelled,
}

impl TaskEvent {
    /// The event's kind as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskEvent::Created { .. } => "task.created",
            TaskEvent::Dispatched { .. } => "task.dispatched",
            TaskEvent::Started { .. } => "task.started",
            TaskEvent::Finished { .. } => "task.finished",
            TaskEvent::AttemptLost { .. } => "task.attempt_lost",
            TaskEvent::AttemptRefused { .. } => "task.attempt_refused",
            TaskEvent::CancelRequested => "task.cancel_requested",
            TaskEvent::Cancelled => "task.cancelled",
        }
    }
}

/// What is asked of a task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    Create {
        spec: TaskSpec,
    },
    Dispatch {
        node: String,
        now_ms: i64,
    },
    /// The node started attempt `attempt`.
    Start {
        attempt: u32,
    },
    Finish {
        attempt: u32,
        result: JobResult,
        now_ms: i64,
    },
    /// The attempt's lease ran out.
    ExpireLease {
        attempt: u32,
        now_ms: i64,
    },
    Refuse {
        attempt: u32,
        reason: String,
        now_ms: i64,
    },
    Cancel,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("task not found")]
    NotFound,
    #[error("task already exists")]
    Exists,
    #[error("task is {0:?} and cannot change")]
    Finished(TaskState),
    #[error("task is not waiting to be dispatched")]
    NotQueued,
    /// The spec is outside the limits (see `TaskSpec::check`).
    #[error("{0}")]
    Invalid(String),
}

/// First retry after 1 s, doubling, at most 30 s.
pub fn backoff_ms(attempt: u32) -> i64 {
    (1_000i64 << attempt.saturating_sub(1).min(5)).min(30_000)
}

fn retry_at(task: &Task, now_ms: i64, worth_retrying: bool) -> Option<i64> {
    let used = task.attempts.len() as u32;
    (worth_retrying && !task.cancel_requested && used < task.spec.max_attempts).then(|| now_ms + backoff_ms(used))
}

/// The events a command produces (none: nothing to do, e.g. a late or repeated answer).
pub fn decide(task: Option<&Task>, command: &TaskCommand) -> Result<Vec<TaskEvent>, TaskError> {
    use TaskCommand as C;
    use TaskEvent as E;
    let Some(task) = task else {
        return match command {
            C::Create { spec } => {
                spec.check()?;
                Ok(vec![E::Created { spec: spec.clone() }])
            }
            _ => Err(TaskError::NotFound),
        };
    };
    // Answers about an attempt that is no longer current change nothing.
    let current = |attempt: u32| task.current().is_some_and(|a| a.n == attempt);
    Ok(match command {
        C::Create { .. } => return Err(TaskError::Exists),
        C::Cancel if task.state.is_terminal() => return Err(TaskError::Finished(task.state)),
        C::Cancel if task.state == TaskState::Queued => vec![E::Cancelled],
        C::Cancel if task.cancel_requested => vec![],
        C::Cancel => vec![E::CancelRequested],
        _ if task.state.is_terminal() => vec![],
        C::Dispatch { node, now_ms } => {
            if task.state != TaskState::Queued || *now_ms < task.not_before_ms {
                return Err(TaskError::NotQueued);
            }
            vec![E::Dispatched { attempt: task.attempts.len() as u32 + 1, node: node.clone() }]
        }
        C::Start { attempt } if current(*attempt) && task.state == TaskState::Dispatched => {
            vec![E::Started { attempt: *attempt }]
        }
        C::Start { .. } => vec![],
        // Its worker stopped it for want of a lease: the same as losing the node.
        C::Finish { attempt, result, now_ms } if current(*attempt) && result.lease_lost => {
            vec![E::AttemptLost { attempt: *attempt, retry_at: retry_at(task, *now_ms, true) }]
        }
        C::Finish { attempt, result, now_ms } if current(*attempt) => {
            let retry = retry_at(task, *now_ms, !result.succeeded() && task.spec.retry_on_failure && !result.cancelled);
            vec![E::Finished { attempt: *attempt, result: result.clone(), retry_at: retry }]
        }
        C::ExpireLease { attempt, now_ms } if current(*attempt) => {
            vec![E::AttemptLost { attempt: *attempt, retry_at: retry_at(task, *now_ms, true) }]
        }
        C::Refuse { attempt, reason, now_ms } if current(*attempt) => {
            vec![E::AttemptRefused {
                attempt: *attempt,
                reason: reason.clone(),
                retry_at: retry_at(task, *now_ms, true),
            }]
        }
        // The job ran to a clean end but its answer came after the lease ran out, and the
        // retry is not out yet: that run is the task's, and no second run follows.
        C::Finish { attempt, result, .. } if late_success(task, *attempt, result) => {
            vec![E::Finished { attempt: *attempt, result: result.clone(), retry_at: None }]
        }
        C::Finish { .. } | C::ExpireLease { .. } | C::Refuse { .. } => vec![],
    })
}

/// A success from the attempt that was just lost, while the task waits for its retry.
fn late_success(task: &Task, attempt: u32, result: &JobResult) -> bool {
    let last_lost = task.attempts.last().is_some_and(|a| a.n == attempt && a.outcome == Some(AttemptOutcome::Lost));
    task.state == TaskState::Queued && last_lost && result.succeeded() && !result.lease_lost
}

/// The task after `event`, at `now_ms`.
pub fn apply(task: Option<Task>, id: &str, now_ms: i64, event: &TaskEvent) -> Option<Task> {
    use TaskEvent as E;
    if let E::Created { spec } = event {
        return Some(Task {
            id: id.to_owned(),
            state: TaskState::Queued,
            spec: spec.clone(),
            attempts: Vec::new(),
            result: None,
            reason: None,
            cancel_requested: false,
            not_before_ms: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
        });
    }
    let mut t = task?;
    t.updated_ms = now_ms;
    fold(&mut t, id, now_ms, event);
    Some(t)
}

/// What an event changes on an existing task (`now_ms` is the event's time).
fn fold(t: &mut Task, id: &str, now_ms: i64, event: &TaskEvent) {
    use TaskEvent as E;
    // After an attempt closes: retry, or end (cancelled if asked, else failed).
    let close = |t: &mut Task, retry_at: Option<i64>, reason: Option<String>| match retry_at {
        Some(at) => {
            t.state = TaskState::Queued;
            t.not_before_ms = at;
        }
        None if t.cancel_requested => t.state = TaskState::Cancelled,
        None => {
            t.state = TaskState::Failed;
            t.reason = t.reason.take().or(reason);
        }
    };
    match event {
        E::Created { .. } => {}
        E::Dispatched { attempt, node } => {
            t.attempts.push(Attempt {
                n: *attempt,
                job_id: format!("{id}/{attempt}"),
                node: node.clone(),
                dispatched_ms: now_ms,
                started_ms: None,
                finished_ms: None,
                outcome: None,
            });
            t.state = TaskState::Dispatched;
        }
        E::Started { .. } => {
            if let Some(a) = t.attempts.last_mut() {
                a.started_ms = Some(now_ms);
            }
            t.state = TaskState::Running;
        }
        E::Finished { result, retry_at, .. } => {
            if let Some(a) = t.attempts.last_mut() {
                a.finished_ms = Some(now_ms);
                a.outcome = Some(AttemptOutcome::Ran { exit_code: result.exit_code, succeeded: result.succeeded() });
            }
            t.result = Some(result.clone());
            if result.succeeded() {
                t.state = TaskState::Succeeded;
            } else if result.cancelled {
                t.state = TaskState::Cancelled;
            } else {
                close(t, *retry_at, None);
            }
        }
        E::AttemptLost { retry_at, .. } => {
            if let Some(a) = t.attempts.last_mut() {
                a.finished_ms = Some(now_ms);
                a.outcome = Some(AttemptOutcome::Lost);
            }
            close(t, *retry_at, Some("attempts used up: the node running it was lost".into()));
        }
        E::AttemptRefused { reason, retry_at, .. } => {
            if let Some(a) = t.attempts.last_mut() {
                a.finished_ms = Some(now_ms);
                a.outcome = Some(AttemptOutcome::Refused { reason: reason.clone() });
            }
            close(t, *retry_at, Some(format!("attempts used up; last refusal: {reason}")));
        }
        E::CancelRequested => t.cancel_requested = true,
        E::Cancelled => {
            t.cancel_requested = true;
            t.state = TaskState::Cancelled;
        }
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
