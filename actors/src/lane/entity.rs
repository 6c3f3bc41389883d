//! Lanes on the kernel: stream, rules, indexes (lanes, handoffs by queue, durable
//! timers, the callback outbox) and handoff metrics. No shell code: the kernel's
//! actor runs every lane command; lanes never wait on each other.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use storage::IndexOp;
use tokio::sync::broadcast;

use super::lifecycle::{self, Lane, LaneCommand, LaneError, LaneEvent};
use super::store::{self, OUTBOX};
use crate::kernel::{At, Context, Entities, Entity, Failure, Kernel, SupervisorConfig};
use crate::labels::bounded;

/// What lane actors share besides the log.
pub struct LaneDeps {
    /// Lane ids, sent after every durable change (long-polls listen here).
    pub changes: broadcast::Sender<String>,
}

/// The lane kind.
#[derive(Debug, Clone, Copy)]
pub struct Lanes;

/// Every lane on this node.
pub type LaneHandle = Entities<Lanes>;

impl Entity for Lanes {
    const KIND: &'static str = "lane";
    const STREAM: &'static str = "lane";
    /// A lane lives long (thousands of checkpoints): it wakes from its snapshot.
    const SNAPSHOT_EVERY: Option<u64> = Some(store::SNAPSHOT_EVERY);

    type Id = String;
    type State = Lane;
    type Command = LaneCommand;
    type Event = LaneEvent;
    type Error = LaneError;
    type Deps = LaneDeps;

    fn creates(command: &LaneCommand) -> bool {
        matches!(command, LaneCommand::Create { .. })
    }

    fn not_found() -> LaneError {
        LaneError::NotFound
    }

    fn decide(
        _: &LaneDeps,
        _: &Context<'_, Self>,
        lane: Option<&Lane>,
        command: &LaneCommand,
    ) -> Result<Vec<LaneEvent>, LaneError> {
        lifecycle::decide(lane, command)
    }

    fn apply(lane: Option<Lane>, at: At<'_, String>, event: &LaneEvent) -> Option<Lane> {
        lifecycle::apply(lane, at.id, at.time_ms, event)
    }

    fn to_snapshot(lane: &Lane) -> Option<Result<Vec<u8>, String>> {
        Some(serde_json::to_vec(lane).map_err(|e| e.to_string()))
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Result<Lane, String>> {
        Some(serde_json::from_slice(bytes).map_err(|e| e.to_string()))
    }

    fn event_kind(event: &LaneEvent) -> &'static str {
        event.kind()
    }

    fn state_name(lane: &Lane) -> &'static str {
        lane.status.as_str()
    }

    fn index_ops(cx: &Context<'_, Self>, before: Option<&Lane>, after: &Lane, events: &[LaneEvent]) -> Vec<IndexOp> {
        let mut ops = store::index_ops(before, after, events);
        ops.extend(outbox(cx, after, events));
        ops
    }

    fn committed(deps: &LaneDeps, before: Option<&Lane>, after: &Lane, events: &[LaneEvent]) {
        let (was, is) = (open_queue(before), open_queue(Some(after)));
        if was != is {
            if let Some(q) = was {
                metrics::gauge!("dispatch_open_handoffs", "queue" => bounded("queue", &q)).decrement(1.0);
            }
            if let Some(q) = is {
                metrics::gauge!("dispatch_open_handoffs", "queue" => bounded("queue", &q)).increment(1.0);
            }
        }
        for e in events {
            observe(e, after);
        }
        if !events.is_empty() {
            let _ = deps.changes.send(after.id.clone());
        }
    }

    fn claim_taken(key: String) -> Option<LaneError> {
        Some(LaneError::HandoffIdTaken(key))
    }
}

/// Starts the lane supervisor; the open-handoffs gauge starts from the log.
pub async fn start(
    kernel: Kernel,
    deps: Arc<LaneDeps>,
    config: SupervisorConfig,
) -> Result<LaneHandle, Failure<Lanes>> {
    let unavailable = |e: &dyn std::fmt::Display| Failure::Unavailable(e.to_string());
    let mut open: HashMap<String, f64> = HashMap::new();
    for id in store::lane_ids(&kernel.log).map_err(|e| unavailable(&e))? {
        let loaded = crate::kernel::load::<Lanes>(&kernel.log, &id).map_err(|e| unavailable(&e))?;
        if let Some(lane) = &loaded.state {
            super::upgrade::backfill_past_handoffs(&kernel, lane, loaded.seq).await.map_err(|e| unavailable(&e))?;
        }
        if let Some(q) = open_queue(loaded.state.as_ref()) {
            *open.entry(q).or_default() += 1.0;
        }
    }
    for (queue, n) in open {
        metrics::gauge!("dispatch_open_handoffs", "queue" => bounded("queue", &queue)).increment(n);
    }
    Entities::start(kernel, deps, config).await.map_err(|e| unavailable(&e))
}

fn open_queue(lane: Option<&Lane>) -> Option<String> {
    lane.and_then(Lane::open_handoff).map(|h| h.request.queue.clone())
}

/// A callback delivery for each decision of a lane that has a callback URL.
fn outbox(cx: &Context<'_, Lanes>, lane: &Lane, events: &[LaneEvent]) -> Vec<IndexOp> {
    let Some(url) = &lane.callback_url else { return Vec::new() };
    events
        .iter()
        .filter_map(|e| match e {
            LaneEvent::HandoffDecided { decision } | LaneEvent::HandoffExpired { decision } => Some(decision),
            _ => None,
        })
        .map(|decision| {
            let id = cx.ids.next_id().to_string();
            let envelope = json!({
                "type": "handoff.decided", "version": "1.0", "id": id, "request_id": id,
                "lane_id": lane.id, "occurred_at_ms": decision.at_ms,
                "actor": { "kind": cx.origin.actor.kind, "id": decision.by },
                "data": decision,
            });
            let entry = json!({ "id": id, "lane_id": lane.id, "handoff_id": decision.handoff_id, "url": url, "body": envelope.to_string(), "attempts": 0, "next_ms": 0 });
            IndexOp::Put { index: OUTBOX.into(), key: id, value: entry.to_string().into_bytes() }
        })
        .collect()
}

/// Handoff metrics, by bounded labels (trigger class and queue come from agents and
/// operators; deployments keep them few).
fn observe(event: &LaneEvent, lane: &Lane) {
    let h = lane.handoff.as_ref();
    let trigger = h.map(|h| h.request.trigger_class.clone()).unwrap_or_default();
    let seconds = |from: i64, to: i64| (to - from).max(0) as f64 / 1e3;
    match event {
        LaneEvent::HandoffRequested { request } => {
            metrics::counter!("dispatch_handoffs_requested_total", "trigger_class" => bounded("trigger_class", &request.trigger_class))
                .increment(1);
        }
        LaneEvent::HandoffDecided { decision } => {
            metrics::counter!("dispatch_handoff_decisions_total", "action" => decision.action.as_str()).increment(1);
            if let Some(h) = h {
                metrics::histogram!("dispatch_handoff_decision_seconds", "trigger_class" => bounded("trigger_class", &trigger))
                    .record(seconds(h.requested_ms, decision.at_ms));
            }
        }
        LaneEvent::HandoffExpired { .. } => metrics::counter!("dispatch_handoff_timeouts_total").increment(1),
        LaneEvent::Escalated { reason, .. } if reason == lifecycle::SLA_MISSED => {
            metrics::counter!("dispatch_handoff_sla_misses_total").increment(1)
        }
        _ => {}
    }
    if matches!(event, LaneEvent::ContextAdded { .. } | LaneEvent::Rerouted { .. } | LaneEvent::HandoffDecided { .. })
        && let Some(h) = h
        && h.first_response_ms == Some(lane.updated_ms)
    {
        metrics::histogram!("dispatch_handoff_first_response_seconds", "trigger_class" => bounded("trigger_class", &trigger))
            .record(seconds(h.requested_ms, lane.updated_ms));
    }
}
