//! One actor per lane, and their supervisor. The actor sequences `decide`, the log
//! append (events, indexes, timers, callback outbox, idempotency record in one
//! fsynced transaction) and `apply`; lanes never wait on each other.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::json;
use storage::{
    Append, AppendError, EventRecord, IdempotencyKey, IdempotencyRecord, IndexOp, Log, LogWriter, StoredResponse,
};
use tokio::sync::broadcast;

use super::lifecycle::{self, Lane, LaneCommand, LaneError, LaneEvent};
use super::store::{self, OUTBOX};
use crate::node::Origin;

/// What every lane actor needs.
pub struct LaneDeps {
    pub log: Log,
    pub writer: LogWriter,
    /// Lane ids, sent after every durable change (long-polls listen here).
    pub changes: broadcast::Sender<String>,
}

/// A command with its audit origin and, for idempotent requests, its key and hash.
pub struct LaneRequest {
    pub lane_id: String,
    pub command: LaneCommand,
    pub origin: Origin,
    pub idempotency: Option<(IdempotencyKey, [u8; 32])>,
    /// More index changes in the same transaction (a fired timer's removal, a new
    /// lane's callback secret).
    pub index_ops: Vec<IndexOp>,
}

/// A command's durable outcome.
#[derive(Debug, Clone)]
pub struct LaneOutcome {
    pub lane: Lane,
    /// The records written (empty when nothing changed or when replayed).
    pub records: Vec<EventRecord>,
    /// Answered from an earlier request with the same key: the record it wrote.
    pub replayed: Option<EventRecord>,
}

/// Why a lane command failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LaneFailure {
    #[error(transparent)]
    Rejected(#[from] LaneError),
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    #[error("lanes unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(e: &dyn std::fmt::Display) -> LaneFailure {
    LaneFailure::Unavailable(e.to_string())
}

/// Messages to a lane actor.
pub enum LaneMsg {
    Run(Box<LaneRequest>, RpcReplyPort<Result<LaneOutcome, LaneFailure>>),
    /// The lane as the actor holds it (what the log says, without replaying it).
    Get(RpcReplyPort<Option<Lane>>),
    /// Idle: stop after what is already queued (the log keeps everything).
    Passivate,
}

struct LaneActor {
    deps: Arc<LaneDeps>,
}

struct LaneState {
    id: String,
    lane: Option<Lane>,
    seq: u64,
}

impl Actor for LaneActor {
    type Msg = LaneMsg;
    type State = LaneState;
    type Arguments = String;

    async fn pre_start(&self, _me: ActorRef<LaneMsg>, id: String) -> Result<LaneState, ActorProcessingErr> {
        let (lane, seq) = match store::load(&self.deps.log, &id)? {
            Some((l, s)) => (Some(l), s),
            None => (None, 0),
        };
        Ok(LaneState { id, lane, seq })
    }

    async fn handle(&self, me: ActorRef<LaneMsg>, msg: LaneMsg, st: &mut LaneState) -> Result<(), ActorProcessingErr> {
        match msg {
            LaneMsg::Passivate => me.stop(Some("passivated".into())),
            LaneMsg::Run(request, reply) => {
                let _ = reply.send(self.run(st, *request).await);
            }
            LaneMsg::Get(reply) => {
                let _ = reply.send(st.lane.clone());
            }
        }
        Ok(())
    }
}

impl LaneActor {
    async fn run(&self, st: &mut LaneState, req: LaneRequest) -> Result<LaneOutcome, LaneFailure> {
        if let Some((key, hash)) = &req.idempotency
            && let Some(stored) = self.deps.log.idempotency(key).map_err(|e| unavailable(&e))?
        {
            return self.replay(st, &stored, hash);
        }
        let events = lifecycle::decide(st.lane.as_ref(), &req.command)?;
        if events.is_empty() && req.index_ops.is_empty() {
            let lane = st.lane.clone().ok_or(LaneError::NotFound)?;
            return Ok(LaneOutcome { lane, records: Vec::new(), replayed: None });
        }
        let now = now_ms();
        let mut next = st.lane.clone();
        let mut records = Vec::new();
        for e in &events {
            let from = next.as_ref().map(|l| l.status.as_str());
            next = lifecycle::apply(next, &st.id, now, e);
            records.push(req.origin.event(e.kind(), from, next.as_ref().map(|l| l.status.as_str()), e));
        }
        let after = match (next, &st.lane) {
            (Some(l), _) => l,
            (None, _) => return Err(LaneError::NotFound.into()),
        };
        let mut index_ops = req.index_ops.clone();
        index_ops.extend(store::index_ops(st.lane.as_ref(), &after, &events));
        index_ops.extend(outbox(&after, &events, &req.origin));
        let idempotency = req.idempotency.as_ref().map(|(key, hash)| {
            let response = StoredResponse::StreamState { stream: store::stream(&st.id), seq: st.seq + 1 };
            (key.clone(), IdempotencyRecord { request_hash: *hash, status: 200, response, created_ms: now })
        });
        let append = Append {
            stream: store::stream(&st.id),
            expected_seq: st.seq,
            events: records,
            index_ops,
            idempotency,
            ..Default::default()
        };
        let appended = match self.deps.writer.append(append).await {
            Ok(a) => a,
            Err(AppendError::IdempotencyKeyExists(stored)) => {
                return self.replay(st, &stored, &req.idempotency.map(|(_, h)| h).unwrap_or_default());
            }
            Err(AppendError::Taken { key, .. }) => return Err(LaneError::HandoffIdTaken(key).into()),
            Err(e) => return Err(unavailable(&e)),
        };
        st.seq += appended.records.len() as u64;
        let (was, is) = (open_queue(st.lane.as_ref()), open_queue(Some(&after)));
        if was != is {
            if let Some(q) = was {
                metrics::gauge!("dispatch_open_handoffs", "queue" => crate::labels::bounded("queue", &q))
                    .decrement(1.0);
            }
            if let Some(q) = is {
                metrics::gauge!("dispatch_open_handoffs", "queue" => crate::labels::bounded("queue", &q))
                    .increment(1.0);
            }
        }
        st.lane = Some(after.clone());
        for e in &events {
            observe(e, &after);
        }
        if !events.is_empty() {
            let _ = self.deps.changes.send(st.id.clone());
        }
        Ok(LaneOutcome { lane: after, records: appended.records, replayed: None })
    }

    /// The same key again: the same request answers with what it wrote; another is refused.
    fn replay(&self, st: &LaneState, stored: &IdempotencyRecord, hash: &[u8; 32]) -> Result<LaneOutcome, LaneFailure> {
        if stored.request_hash != *hash {
            metrics::counter!("dispatch_idempotency_conflicts_total").increment(1);
            return Err(LaneFailure::KeyReused);
        }
        let StoredResponse::StreamState { stream, seq } = &stored.response else { return Err(LaneFailure::KeyReused) };
        let record =
            self.deps.log.read_stream(stream, seq.saturating_sub(1)).map_err(|e| unavailable(&e))?.into_iter().next();
        metrics::counter!("dispatch_idempotency_replays_total").increment(1);
        let lane = st.lane.clone().ok_or(LaneError::NotFound)?;
        Ok(LaneOutcome { lane, records: Vec::new(), replayed: record })
    }
}

fn open_queue(lane: Option<&Lane>) -> Option<String> {
    lane.and_then(Lane::open_handoff).map(|h| h.request.queue.clone())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A callback delivery for each decision of a lane that has a callback URL.
fn outbox(lane: &Lane, events: &[LaneEvent], origin: &Origin) -> Vec<IndexOp> {
    let Some(url) = &lane.callback_url else { return Vec::new() };
    events
        .iter()
        .filter_map(|e| match e {
            LaneEvent::HandoffDecided { decision } | LaneEvent::HandoffExpired { decision } => Some(decision),
            _ => None,
        })
        .map(|decision| {
            let id = uuid::Uuid::now_v7().to_string();
            let envelope = json!({
                "type": "handoff.decided", "version": "1.0", "id": id, "request_id": id,
                "lane_id": lane.id, "occurred_at_ms": decision.at_ms,
                "actor": { "kind": origin.actor.kind, "id": decision.by },
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
            metrics::counter!("dispatch_handoffs_requested_total", "trigger_class" => crate::labels::bounded("trigger_class", &request.trigger_class))
                .increment(1);
        }
        LaneEvent::HandoffDecided { decision } => {
            metrics::counter!("dispatch_handoff_decisions_total", "action" => decision.action.as_str()).increment(1);
            if let Some(h) = h {
                metrics::histogram!("dispatch_handoff_decision_seconds", "trigger_class" => crate::labels::bounded("trigger_class", &trigger))
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
        metrics::histogram!("dispatch_handoff_first_response_seconds", "trigger_class" => crate::labels::bounded("trigger_class", &trigger))
            .record(seconds(h.requested_ms, lane.updated_ms));
    }
}

// ---------------------------------------------------------------- supervisor

/// Messages to the lane supervisor.
pub enum SupervisorMsg {
    /// Route a message to the lane's actor, waking it if needed.
    Route(String, LaneMsg),
    /// Passivate lanes idle longer than the configured time.
    Sweep,
}

/// How many lane actors stay awake, and for how long without use.
#[derive(Debug, Clone, Copy)]
pub struct LaneSupervisorConfig {
    /// Most lane actors awake; past it the least recently used are passivated.
    pub max_live: usize,
    /// Lane actors idle this long are passivated.
    pub idle_after: std::time::Duration,
}

impl Default for LaneSupervisorConfig {
    fn default() -> Self {
        LaneSupervisorConfig { max_live: 10_000, idle_after: std::time::Duration::from_secs(300) }
    }
}

/// Finds or wakes the actor of a lane; restarts one that fails (from the log) and
/// passivates idle ones, so memory follows the lanes in use, not every lane ever opened.
pub struct LaneSupervisor;

pub struct SupervisorState {
    deps: Arc<LaneDeps>,
    config: LaneSupervisorConfig,
    lanes: HashMap<String, (ActorRef<LaneMsg>, std::time::Instant)>,
    by_actor: HashMap<ractor::ActorId, String>,
}

impl SupervisorState {
    fn passivate(&mut self, id: &str) {
        if let Some((actor, _)) = self.lanes.remove(id) {
            self.by_actor.remove(&actor.get_id());
            let _ = actor.send_message(LaneMsg::Passivate);
        }
    }

    /// Passivates idle lanes, and the least recently used past `max_live`.
    fn sweep(&mut self) {
        let idle_after = self.config.idle_after;
        let idle: Vec<String> =
            self.lanes.iter().filter(|(_, (_, used))| used.elapsed() >= idle_after).map(|(id, _)| id.clone()).collect();
        idle.iter().for_each(|id| self.passivate(id));
        if self.lanes.len() > self.config.max_live {
            let mut by_age: Vec<(std::time::Instant, String)> =
                self.lanes.iter().map(|(id, (_, used))| (*used, id.clone())).collect();
            by_age.sort_unstable();
            let excess = self.lanes.len() - self.config.max_live;
            by_age.into_iter().take(excess).for_each(|(_, id)| self.passivate(&id));
        }
        metrics::gauge!("dispatch_live_actors", "kind" => "lane").set(self.lanes.len() as f64);
    }
}

impl Actor for LaneSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = (Arc<LaneDeps>, LaneSupervisorConfig);

    async fn pre_start(
        &self,
        me: ActorRef<SupervisorMsg>,
        (deps, config): (Arc<LaneDeps>, LaneSupervisorConfig),
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let every = (config.idle_after / 2).max(std::time::Duration::from_millis(100));
        me.send_interval(every, || SupervisorMsg::Sweep);
        Ok(SupervisorState { deps, config, lanes: HashMap::new(), by_actor: HashMap::new() })
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, msg) = match msg {
            SupervisorMsg::Route(id, msg) => (id, msg),
            SupervisorMsg::Sweep => {
                st.sweep();
                return Ok(());
            }
        };
        let actor = match st.lanes.get_mut(&id) {
            Some((a, used)) => {
                *used = std::time::Instant::now();
                a.clone()
            }
            None => {
                let (a, _) =
                    Actor::spawn_linked(None, LaneActor { deps: st.deps.clone() }, id.clone(), me.get_cell()).await?;
                st.by_actor.insert(a.get_id(), id.clone());
                st.lanes.insert(id, (a.clone(), std::time::Instant::now()));
                if st.lanes.len() > st.config.max_live {
                    st.sweep();
                }
                metrics::gauge!("dispatch_live_actors", "kind" => "lane").set(st.lanes.len() as f64);
                a
            }
        };
        // The lane actor answers the caller itself; the supervisor never waits for it.
        // If it just stopped, a dropped reply port tells the caller to retry.
        if let Err(ractor::MessagingErr::SendErr(LaneMsg::Run(_, reply))) = actor.send_message(msg) {
            let _ = reply.send(Err(LaneFailure::Unavailable("lane actor stopped; retry".into())));
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, _) | SupervisionEvent::ActorTerminated(cell, _, _) = event
            && let Some(id) = st.by_actor.remove(&cell.get_id())
        {
            // The next command wakes a fresh actor from the log.
            st.lanes.remove(&id);
            metrics::counter!("dispatch_actor_restarts_total", "kind" => "lane").increment(1);
        }
        Ok(())
    }
}

/// Handle to the lanes. Clone freely.
#[derive(Clone)]
pub struct Lanes {
    supervisor: ActorRef<SupervisorMsg>,
    pub deps: Arc<LaneDeps>,
}

impl Lanes {
    /// Starts the lane supervisor; the open-handoffs gauge starts from the log.
    pub async fn start(deps: Arc<LaneDeps>, config: LaneSupervisorConfig) -> Result<Self, LaneFailure> {
        let mut open: HashMap<String, f64> = HashMap::new();
        for id in store::lane_ids(&deps.log).map_err(|e| unavailable(&e))? {
            if let Some(q) =
                store::load(&deps.log, &id).map_err(|e| unavailable(&e))?.and_then(|(l, _)| open_queue(Some(&l)))
            {
                *open.entry(q).or_default() += 1.0;
            }
        }
        for (queue, n) in open {
            metrics::gauge!("dispatch_open_handoffs", "queue" => crate::labels::bounded("queue", &queue)).increment(n);
        }
        let (supervisor, _) =
            Actor::spawn(None, LaneSupervisor, (deps.clone(), config)).await.map_err(|e| unavailable(&e))?;
        Ok(Lanes { supervisor, deps })
    }

    /// A lane that was never created gets no actor (an unknown id must not cost memory).
    fn exists(&self, id: &str) -> Result<bool, LaneFailure> {
        Ok(self.deps.log.index_get(store::LANES, id).map_err(|e| unavailable(&e))?.is_some())
    }

    /// Runs a command on its lane's actor.
    pub async fn run(&self, request: LaneRequest) -> Result<LaneOutcome, LaneFailure> {
        if !matches!(request.command, LaneCommand::Create { .. }) && !self.exists(&request.lane_id)? {
            return Err(LaneError::NotFound.into());
        }
        let (id, request) = (request.lane_id.clone(), Box::new(request));
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Route(id, LaneMsg::Run(request, reply)))
            .map_err(|e| unavailable(&e))?
    }

    /// The lane, from its actor's memory (woken from the log if asleep).
    pub async fn get(&self, id: &str) -> Result<Option<Lane>, LaneFailure> {
        if !self.exists(id)? {
            return Ok(None);
        }
        let id = id.to_owned();
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Route(id, LaneMsg::Get(reply)))
            .map_err(|e| unavailable(&e))
    }

    /// Stops every lane actor.
    pub fn stop(&self) {
        self.supervisor.stop_children(None);
        self.supervisor.stop(None);
    }
}
