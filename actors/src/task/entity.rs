//! Tasks on the kernel: stream, rules, indexes (open tasks, by state, by ticket) and
//! outcome metrics. The scheduler (placement and leases) holds the open tasks and
//! runs every change through `kernel::execute`.

use storage::IndexOp;

use super::lifecycle::{self, Task, TaskCommand, TaskError, TaskEvent};
use super::store;
use crate::kernel::{At, Context, Entity};

/// The task kind.
#[derive(Debug, Clone, Copy)]
pub struct Tasks;

impl Entity for Tasks {
    const KIND: &'static str = "task";
    const STREAM: &'static str = "task";

    type Id = String;
    type State = Task;
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;
    type Deps = ();

    fn creates(command: &TaskCommand) -> bool {
        matches!(command, TaskCommand::Create { .. })
    }

    fn not_found() -> TaskError {
        TaskError::NotFound
    }

    fn decide(
        _: &(),
        _: &Context<'_, Self>,
        task: Option<&Task>,
        command: &TaskCommand,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        lifecycle::decide(task, command)
    }

    fn apply(task: Option<Task>, at: At<'_, String>, event: &TaskEvent) -> Option<Task> {
        lifecycle::apply(task, at.id, at.time_ms, event)
    }

    fn event_kind(event: &TaskEvent) -> &'static str {
        event.kind()
    }

    fn state_name(task: &Task) -> &'static str {
        task.state.as_str()
    }

    fn index_ops(_: &Context<'_, Self>, before: Option<&Task>, after: &Task, _: &[TaskEvent]) -> Vec<IndexOp> {
        store::index_ops(before, after)
    }

    fn is_final(task: &Task) -> bool {
        task.state.is_terminal()
    }

    /// Outcomes, retries, run times.
    fn committed(_: &(), before: Option<&Task>, after: &Task, events: &[TaskEvent]) {
        for e in events {
            match e {
                TaskEvent::Finished { result, .. } if result.finished_ms > result.started_ms => {
                    metrics::histogram!("dispatch_job_run_seconds")
                        .record((result.finished_ms - result.started_ms) as f64 / 1e3);
                }
                TaskEvent::Finished { retry_at: Some(_), .. }
                | TaskEvent::AttemptLost { retry_at: Some(_), .. }
                | TaskEvent::AttemptRefused { retry_at: Some(_), .. } => {
                    metrics::counter!("dispatch_task_retries_total").increment(1)
                }
                _ => {}
            }
        }
        if after.state.is_terminal() && before.is_none_or(|b| !b.state.is_terminal()) {
            metrics::counter!("dispatch_tasks_total", "outcome" => after.state.as_str()).increment(1);
        }
    }
}
