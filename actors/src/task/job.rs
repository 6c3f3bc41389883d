//! A job: one attempt of a task on a worker; what running it produced, as recorded.

use serde::{Deserialize, Serialize};

/// How much network a job gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkPolicy {
    /// No network at all (the default).
    #[default]
    None,
    /// An internal network with no route out.
    Restricted,
}

impl NetworkPolicy {
    /// The name used in node configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::None => "none",
            NetworkPolicy::Restricted => "restricted",
        }
    }
}

/// What running a job produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl JobResult {
    /// Ran to completion with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
            && !self.timed_out
            && !self.oom_killed
            && !self.cancelled
            && !self.lease_lost
            && self.error.is_none()
    }
}

/// Env names a task may not set: the job's own context.
pub const RESERVED_ENV: [&str; 3] = ["DISPATCH_TASK_ID", "DISPATCH_JOB_ID", "DISPATCH_WORKSPACE"];

/// [`valid_workspace_path`] as a JSON Schema pattern: parts separated by `/`, none
/// empty, `.` or `..` (so not absolute either).
pub const WORKSPACE_PATH_PATTERN: &str =
    "^(?:[^/.][^/]*|\\.[^/.][^/]*|\\.\\.[^/]+)(?:/(?:[^/.][^/]*|\\.[^/.][^/]*|\\.\\.[^/]+))*$";
/// The longest workspace file path, in characters.
pub const MAX_WORKSPACE_PATH: usize = 255;

/// Checks a workspace file path: relative, no `..`, no empty parts.
pub fn valid_workspace_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.chars().count() <= MAX_WORKSPACE_PATH
        && path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}
