//! Logs written before a lane's earlier handoffs left its state (they were folded into
//! a `history` list) have no past-handoff index entries: at start-up each such lane
//! gets them rebuilt from its own events, once, in one durable append.

use storage::Append;

use super::lifecycle::{self, Lane, LaneEvent};
use super::store::{self, PAST_HANDOFFS, SEP};
use crate::kernel::{Kernel, LoadError};

/// Writes the past-handoff entries `lane` (at stream position `seq`) is missing;
/// answers how many were written (0 for a lane written by this version).
pub async fn backfill_past_handoffs(kernel: &Kernel, lane: &Lane, seq: u64) -> Result<usize, LoadError> {
    // A lane's entries are written all at once here, or one by one as handoffs are
    // replaced by this version: one entry means the lane has them all.
    let prefix = format!("{}{SEP}", lane.id);
    if lane.handoffs <= 1 || !kernel.log.index_scan(PAST_HANDOFFS, &prefix, 1)?.is_empty() {
        return Ok(0);
    }
    let stream = store::stream(&lane.id);
    let corrupt = |e: &dyn std::fmt::Display| LoadError::Corrupt { stream: stream.clone(), reason: e.to_string() };
    let mut state: Option<Lane> = None;
    let mut ops = Vec::new();
    for record in kernel.log.read_range(&stream, 1, seq)? {
        let event: LaneEvent = serde_json::from_slice(&record.payload).map_err(|e| corrupt(&e))?;
        if matches!(event, LaneEvent::HandoffRequested { .. })
            && let Some(previous) = state.as_ref().and_then(|l| l.handoff.as_ref())
        {
            ops.push(store::past_handoff_op(&lane.id, previous));
        }
        state = lifecycle::apply(state, &lane.id, record.time_ms, &event);
    }
    let written = ops.len();
    let append = Append { stream: stream.clone(), expected_seq: seq, index_ops: ops, ..Append::default() };
    kernel.writer.append(append).await.map_err(|e| corrupt(&e))?;
    tracing::info!(lane = %lane.id, written, "past handoffs indexed from the lane's events");
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use storage::{IndexOp, Log, LogWriter};

    use super::*;
    use crate::kernel::{ManualClock, Origin, Request, SeededIds, execute, load};
    use crate::lane::{DecisionAction, HandoffRequest, LaneCommand, Lanes, TimeoutAction};

    #[tokio::test]
    async fn a_lane_from_an_older_log_gets_its_past_handoffs_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("log.redb")).unwrap();
        let (writer, _h) = LogWriter::start(&log).unwrap();
        let kernel = Kernel { log: log.clone(), writer, clock: ManualClock::at(1_000), ids: SeededIds::new(1) };
        let (changes, _) = tokio::sync::broadcast::channel(4);
        let deps = crate::lane::LaneDeps { changes };
        let mut loaded = load::<Lanes>(&log, &"l1".to_owned()).unwrap();
        let run = |command| Request::new("l1".to_owned(), command, Origin::system("test"));
        let handoff = |id: &str| LaneCommand::RequestHandoff {
            request: HandoffRequest {
                handoff_id: id.into(),
                checkpoint: "c1".into(),
                trigger_class: "policy".into(),
                reason: "r".into(),
                context: serde_json::json!({}),
                queue: "ops".into(),
                sla_due_ms: 2_000,
                deadline_ms: 3_000,
                timeout_action: TimeoutAction::Reject,
            },
        };
        let approve = LaneCommand::Decide {
            handoff_id: "h0".into(),
            action: DecisionAction::Approve,
            reason: "ok".into(),
            reroute_to: None,
            context: None,
            by: "ann".into(),
            now_ms: 1_500,
        };
        let commands = [
            LaneCommand::Create { agent: "a".into(), ticket_id: None, callback_url: None },
            LaneCommand::Checkpoint { name: "c1".into(), state: serde_json::json!({}), now_ms: 1_000 },
            handoff("h0"),
            approve,
            handoff("h1"),
        ];
        for command in commands {
            execute(&kernel, &deps, &mut loaded, &run(command)).await.unwrap();
        }
        // As an older version left it: the index entry is not there.
        let gone = IndexOp::Delete { index: PAST_HANDOFFS.into(), key: format!("l1{SEP}h0") };
        let append = Append {
            stream: store::stream("l1"),
            expected_seq: loaded.seq,
            index_ops: vec![gone],
            ..Append::default()
        };
        kernel.writer.append(append).await.unwrap();
        let lane = loaded.state.clone().unwrap();
        assert!(store::handoff_of(&log, &lane, "h0").unwrap().is_none());

        assert_eq!(backfill_past_handoffs(&kernel, &lane, loaded.seq).await.unwrap(), 1);
        let h0 = store::handoff_of(&log, &lane, "h0").unwrap().unwrap();
        assert_eq!(h0.request.handoff_id, "h0");
        assert_eq!(backfill_past_handoffs(&kernel, &lane, loaded.seq).await.unwrap(), 0, "once");
    }
}
