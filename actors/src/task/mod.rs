//! Tasks: work run as sandboxed jobs on worker nodes.

mod entity;
mod job;
pub mod lifecycle;
pub mod placement;
pub mod spec;
pub mod store;

pub use entity::Tasks;
pub use job::{
    JobResult, MAX_WORKSPACE_PATH, NetworkPolicy, RESERVED_ENV, WORKSPACE_PATH_PATTERN, valid_workspace_path,
};
pub use lifecycle::{Attempt, AttemptOutcome, Task, TaskCommand, TaskError, TaskEvent, TaskSpec, TaskState};
pub use spec::{DEFAULT_MAX_ATTEMPTS, DEFAULT_PIDS, DEFAULT_TIMEOUT_SECONDS, MAX_FILES_BYTES};
