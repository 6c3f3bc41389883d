//! How lanes live in the log: stream `lane/<id>`, indexes of lanes, of handoffs by
//! queue, of durable timers (SLA and deadline, fired after a restart too) and of
//! callback deliveries waiting to be made.

use storage::{IndexOp, Log, StorageError};

use super::lifecycle::{Lane, LaneEvent};
use super::model::Handoff;

/// Every lane: key `id`.
pub const LANES: &str = "lanes";
/// Handoffs by queue: key `queue␟handoff`, value the lane id.
pub const BY_QUEUE: &str = "handoffs_by_queue";
/// Which lane a handoff belongs to: key `handoff`, value the lane id.
pub const HANDOFF_LANE: &str = "handoff_lane";
/// A lane's earlier handoffs, moved out of its state when the next one is requested:
/// key `lane␟handoff`, value the handoff as JSON.
pub const PAST_HANDOFFS: &str = "lane_past_handoffs";
/// Each lane's callback signing secret (never in an event): key `lane`.
pub const SECRETS: &str = "lane_secrets";
/// Durable timers: key `due_ms (20 digits)␟lane␟handoff␟sla|deadline`.
pub const TIMERS: &str = "lane_timers";
/// Decisions to deliver to lane callbacks: key `delivery id`, value JSON.
pub const OUTBOX: &str = "lane_outbox";
/// Deliveries that used up their attempts: key `delivery id`, value JSON.
pub const DLQ: &str = "lane_dlq";
pub const SEP: char = '\u{1f}';
/// A lane's state is stored as its snapshot every this many events.
pub const SNAPSHOT_EVERY: u64 = 16;

/// The log stream of one lane.
pub fn stream(id: &str) -> String {
    format!("lane/{id}")
}

/// Every lane id.
pub fn lane_ids(log: &Log) -> Result<Vec<String>, StorageError> {
    Ok(log.index_scan(LANES, "", usize::MAX)?.into_iter().map(|(k, _)| k).collect())
}

/// `(handoff, lane)` pairs routed to `queue` (all queues when `None`).
pub fn handoffs(log: &Log, queue: Option<&str>) -> Result<Vec<(String, String)>, StorageError> {
    let prefix = queue.map(|q| format!("{q}{SEP}")).unwrap_or_default();
    Ok(log
        .index_scan(BY_QUEUE, &prefix, usize::MAX)?
        .into_iter()
        .filter_map(|(k, v)| Some((k.rsplit(SEP).next()?.to_owned(), String::from_utf8(v).ok()?)))
        .collect())
}

/// The lane a handoff belongs to.
pub fn lane_of(log: &Log, handoff: &str) -> Result<Option<String>, StorageError> {
    Ok(log.index_get(HANDOFF_LANE, handoff)?.and_then(|v| String::from_utf8(v).ok()))
}

/// Which timer a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Sla,
    Deadline,
}

/// The key of a timer.
pub fn timer_key(due_ms: i64, lane: &str, handoff: &str, kind: TimerKind) -> String {
    let kind = match kind {
        TimerKind::Sla => "sla",
        TimerKind::Deadline => "deadline",
    };
    format!("{:020}{SEP}{lane}{SEP}{handoff}{SEP}{kind}", due_ms.max(0))
}

/// A due timer: its key, lane, handoff and kind.
pub struct DueTimer {
    pub key: String,
    pub lane: String,
    pub handoff: String,
    pub kind: TimerKind,
}

/// Timers due at `now_ms`, earliest first.
pub fn due_timers(log: &Log, now_ms: i64) -> Result<Vec<DueTimer>, StorageError> {
    let mut due = Vec::new();
    for (key, _) in log.index_scan(TIMERS, "", 1_000)? {
        let mut parts = key.split(SEP);
        let (Some(at), Some(lane), Some(handoff), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if at.parse::<i64>().map_or(true, |at| at > now_ms) {
            break;
        }
        let kind = if kind == "sla" { TimerKind::Sla } else { TimerKind::Deadline };
        due.push(DueTimer { key: key.clone(), lane: lane.to_owned(), handoff: handoff.to_owned(), kind });
    }
    Ok(due)
}

/// The handoff `id` of `lane`: its current one, or one from its past.
pub fn handoff_of(log: &Log, lane: &Lane, id: &str) -> Result<Option<Handoff>, StorageError> {
    if let Some(h) = lane.handoff.as_ref().filter(|h| h.request.handoff_id == id) {
        return Ok(Some(h.clone()));
    }
    let Some(bytes) = log.index_get(PAST_HANDOFFS, &format!("{}{SEP}{id}", lane.id))? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StorageError::Corrupt { table: "indexes", reason: format!("{PAST_HANDOFFS} {id}: {e}") })
}

/// Every handoff of `lane`, its past ones (by id) then its current one; at most
/// [`super::lifecycle::MAX_HANDOFFS`].
pub fn all_handoffs(log: &Log, lane: &Lane) -> Result<Vec<Handoff>, StorageError> {
    let prefix = format!("{}{SEP}", lane.id);
    let mut out = Vec::new();
    for (key, bytes) in log.index_scan(PAST_HANDOFFS, &prefix, super::lifecycle::MAX_HANDOFFS)? {
        let h = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::Corrupt { table: "indexes", reason: format!("{PAST_HANDOFFS} {key}: {e}") })?;
        out.push(h);
    }
    out.extend(lane.handoff.clone());
    Ok(out)
}

pub(super) fn past_handoff_op(lane: &str, handoff: &Handoff) -> IndexOp {
    IndexOp::Put {
        index: PAST_HANDOFFS.into(),
        key: format!("{lane}{SEP}{}", handoff.request.handoff_id),
        // A handoff has no map with non-string keys: encoding it cannot fail.
        value: serde_json::to_vec(handoff).unwrap_or_default(),
    }
}

/// Index changes for a lane moving from `before` to `after` through `events`.
pub fn index_ops(before: Option<&Lane>, after: &Lane, events: &[LaneEvent]) -> Vec<IndexOp> {
    let mut ops = Vec::new();
    if before.is_none() {
        ops.push(IndexOp::Put { index: LANES.into(), key: after.id.clone(), value: Vec::new() });
    }
    for e in events {
        match e {
            LaneEvent::HandoffRequested { request } => {
                let id = &request.handoff_id;
                if let Some(previous) = before.and_then(|b| b.handoff.as_ref()) {
                    ops.push(past_handoff_op(&after.id, previous));
                }
                // Handoff ids are global: one taken by any lane refuses the request.
                ops.push(IndexOp::Claim {
                    index: HANDOFF_LANE.into(),
                    key: id.clone(),
                    value: after.id.clone().into_bytes(),
                });
                ops.push(IndexOp::Put {
                    index: BY_QUEUE.into(),
                    key: format!("{}{SEP}{id}", request.queue),
                    value: after.id.clone().into_bytes(),
                });
                for (due, kind) in [(request.sla_due_ms, TimerKind::Sla), (request.deadline_ms, TimerKind::Deadline)] {
                    ops.push(IndexOp::Put {
                        index: TIMERS.into(),
                        key: timer_key(due, &after.id, id, kind),
                        value: Vec::new(),
                    });
                }
            }
            LaneEvent::Rerouted { handoff_id, queue, .. } => {
                if let Some(old) = before.and_then(|b| b.handoff.as_ref()).map(|h| h.request.queue.clone()) {
                    ops.push(IndexOp::Delete { index: BY_QUEUE.into(), key: format!("{old}{SEP}{handoff_id}") });
                }
                ops.push(IndexOp::Put {
                    index: BY_QUEUE.into(),
                    key: format!("{queue}{SEP}{handoff_id}"),
                    value: after.id.clone().into_bytes(),
                });
            }
            _ => {}
        }
    }
    ops
}
