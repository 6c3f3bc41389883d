//! Tasks: work run as sandboxed jobs on worker nodes.

mod job;

pub use job::{JobResult, JobSpec, NetworkPolicy, RESERVED_ENV, valid_workspace_path};
