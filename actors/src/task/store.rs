//! How tasks live in the log: stream `task/<id>`, indexes by state, open tasks and
//! linked ticket, and rebuilding a task from its events.

use storage::{EventRecord, IndexOp, Log, StorageError};

use super::lifecycle::{Task, TaskEvent};

/// Tasks not yet in a final state: key `id`.
pub const OPEN: &str = "task_open";
/// Tasks by state: key `STATE␟id`.
pub const BY_STATE: &str = "task_by_state";
/// Tasks by linked ticket: key `ticket␟id`.
pub const BY_TICKET: &str = "task_by_ticket";
const SEP: char = '\u{1f}';

/// The log stream of one task.
pub fn stream(id: &str) -> String {
    format!("task/{id}")
}

/// Why a stored task could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("task {id}: stored event does not decode: {reason}")]
    Corrupt { id: String, reason: String },
}

/// A task's events, decoded.
pub fn events(log: &Log, id: &str) -> Result<Vec<(EventRecord, TaskEvent)>, LoadError> {
    log.read_stream(&stream(id), 0)?
        .into_iter()
        .map(|r| {
            let e = serde_json::from_slice(&r.payload)
                .map_err(|e| LoadError::Corrupt { id: id.to_owned(), reason: e.to_string() })?;
            Ok((r, e))
        })
        .collect()
}

/// The task and its stream's last sequence number; `None` if it never existed.
pub fn load(log: &Log, id: &str) -> Result<Option<(Task, u64)>, LoadError> {
    let loaded = crate::kernel::load::<super::Tasks>(log, &id.to_owned()).map_err(|e| match e {
        crate::kernel::LoadError::Storage(e) => LoadError::Storage(e),
        crate::kernel::LoadError::Corrupt { reason, .. } => LoadError::Corrupt { id: id.to_owned(), reason },
    })?;
    Ok(loaded.state.map(|t| (t, loaded.seq)))
}

/// Ids of tasks not yet final (what the scheduler picks up after a restart).
pub fn open_ids(log: &Log) -> Result<Vec<String>, StorageError> {
    Ok(log.index_scan(OPEN, "", usize::MAX)?.into_iter().map(|(k, _)| k).collect())
}

/// Ids of tasks in `state` (all when `None`), oldest first.
pub fn ids(log: &Log, state: Option<super::TaskState>) -> Result<Vec<String>, StorageError> {
    let prefix = state.map(|s| format!("{}{SEP}", s.as_str())).unwrap_or_default();
    let mut ids: Vec<String> = log
        .index_scan(BY_STATE, &prefix, usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| k.rsplit(SEP).next().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Ids of the tasks linked to a ticket.
pub fn for_ticket(log: &Log, ticket_id: &str) -> Result<Vec<String>, StorageError> {
    Ok(log
        .index_scan(BY_TICKET, &format!("{ticket_id}{SEP}"), usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| k.rsplit(SEP).next().map(str::to_owned))
        .collect())
}

/// Index changes for a task moving from `before` (None when created) to `after`.
pub fn index_ops(before: Option<&Task>, after: &Task) -> Vec<IndexOp> {
    let key = |t: &Task| format!("{}{SEP}{}", t.state.as_str(), t.id);
    let mut ops = Vec::new();
    match before {
        None => {
            ops.push(IndexOp::Put { index: OPEN.into(), key: after.id.clone(), value: Vec::new() });
            if let Some(ticket) = &after.spec.ticket_id {
                ops.push(IndexOp::Put {
                    index: BY_TICKET.into(),
                    key: format!("{ticket}{SEP}{}", after.id),
                    value: Vec::new(),
                });
            }
        }
        Some(b) if b.state == after.state => return ops,
        Some(b) => ops.push(IndexOp::Delete { index: BY_STATE.into(), key: key(b) }),
    }
    ops.push(IndexOp::Put { index: BY_STATE.into(), key: key(after), value: Vec::new() });
    if after.state.is_terminal() {
        ops.push(IndexOp::Delete { index: OPEN.into(), key: after.id.clone() });
    }
    ops
}
