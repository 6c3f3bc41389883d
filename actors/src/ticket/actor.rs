//! One actor per live ticket: it serializes the ticket's commands, runs `decide`,
//! appends the events (with snapshot, indexes and idempotency record) through the
//! group-commit writer, and only then applies them and answers.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use storage::{Append, AppendError, Hash, IdempotencyKey, IdempotencyRecord, NewEvent, StoredResponse};
use time::OffsetDateTime;
use uuid::Uuid;

use super::lifecycle::{DecideContext, Ticket, TicketCommand, TicketError, apply, decide};
use super::store;
use super::supervisor::{SupervisorMsg, TicketDeps};
use crate::policy::Principal;

/// Who asks, and the ids that tie the request to its trace and its retries.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    pub principal: Principal,
    pub request_id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub now: OffsetDateTime,
    pub idempotency: IdempotencyKey,
    /// Hash of the canonical request; a retry with the same key must match it.
    pub request_hash: Hash,
}

/// A command for one ticket, with the port its answer goes to.
pub struct TicketRequest {
    pub ticket_id: Uuid,
    pub command: TicketCommand,
    pub meta: CommandMeta,
    pub reply: RpcReplyPort<Result<CommandOutcome, CommandError>>,
}

/// A durable answer: the HTTP status and JSON body (the ticket), first-time or replayed.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub status: u16,
    pub body: Vec<u8>,
    pub replayed: bool,
}

/// Why a command got no durable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] TicketError),
    #[error("idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
}

pub(super) enum TicketMsg {
    Command(Box<TicketRequest>),
    /// Sent by the supervisor after it stopped routing to this actor: stop once
    /// everything queued before it is done.
    Passivate,
    #[cfg(test)]
    Crash,
}

pub(super) struct TicketActor {
    pub(super) deps: Arc<TicketDeps>,
    pub(super) supervisor: ActorRef<SupervisorMsg>,
}

pub(super) struct TicketActorState {
    id: Uuid,
    ticket: Option<Ticket>,
}

impl Actor for TicketActor {
    type Msg = TicketMsg;
    type State = TicketActorState;
    type Arguments = Uuid;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, id: Uuid) -> Result<Self::State, ActorProcessingErr> {
        let ticket = store::load(&self.deps.log, id)?;
        Ok(TicketActorState { id, ticket })
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TicketMsg::Command(req) => {
                let req = *req;
                let result = self.run(st, &req).await;
                // A closed or cancelled ticket takes no more commands, and a create that
                // wrote nothing left no ticket: let the supervisor passivate this actor now
                // (told before answering, so the caller never sees it still awake).
                if st.ticket.as_ref().is_none_or(|t| t.state.is_terminal()) {
                    let _ = self.supervisor.cast(SupervisorMsg::Finished(st.id, me.get_id()));
                }
                let _ = req.reply.send(result);
            }
            TicketMsg::Passivate => me.stop(Some("passivated".into())),
            #[cfg(test)]
            TicketMsg::Crash => return Err("crash requested by a test".into()),
        }
        Ok(())
    }
}

impl TicketActor {
    async fn run(&self, st: &mut TicketActorState, req: &TicketRequest) -> Result<CommandOutcome, CommandError> {
        let unavailable = |e: &dyn std::fmt::Display| CommandError::Unavailable(e.to_string());
        let meta = &req.meta;
        // Events store milliseconds; the live ticket uses the same precision, so a
        // ticket rebuilt from the log equals the one that answered.
        let now_ms = (meta.now.unix_timestamp_nanos() / 1_000_000) as i64;
        let now = store::time_of(now_ms);
        // A conflicting writer (a passivated twin finishing its queue) is the only
        // reason to retry: reload and decide again.
        for _ in 0..3 {
            if let Some(stored) = self.deps.log.idempotency(&meta.idempotency).map_err(|e| unavailable(&e))? {
                return self.replay(stored, &meta.request_hash);
            }
            let events = {
                let blobs = &self.deps.blobs;
                let resolves = |uri: &str| blobs.resolves(uri);
                let cx = DecideContext {
                    principal: &meta.principal,
                    now,
                    ticket_id: st.id,
                    templates: &self.deps.templates,
                    resolves: &resolves,
                };
                decide(st.ticket.as_ref(), &req.command, &cx)?
            };

            let expected_seq = st.ticket.as_ref().map_or(0, |t| t.version);
            let mut next = st.ticket.clone();
            let mut new_events = Vec::with_capacity(events.len());
            for (i, event) in events.iter().enumerate() {
                let before = next.as_ref().map(|t| t.state);
                next = apply(next, st.id, expected_seq + i as u64 + 1, now, event);
                new_events.push(NewEvent {
                    event_id: Uuid::now_v7().to_string(),
                    time_ms: now_ms,
                    actor: storage::ActorRef {
                        kind: if meta.principal.role == crate::policy::Role::Agent { "agent" } else { "user" }.into(),
                        id: meta.principal.sub.clone(),
                        role: meta.principal.role.as_str().into(),
                    },
                    tool: req.command.tool().into(),
                    request_id: meta.request_id.clone(),
                    correlation_id: meta.correlation_id.clone(),
                    trace_id: meta.trace_id.clone(),
                    kind: event.kind().into(),
                    from_state: before.map(|s| s.as_str().into()),
                    to_state: next.as_ref().map(|t| t.state.as_str().into()),
                    payload: serde_json::to_vec(event).map_err(|e| unavailable(&e))?,
                });
            }
            let Some(ticket) = next else {
                return Err(unavailable(&"decide produced no ticket"));
            };
            let body = serde_json::to_vec(&ticket).map_err(|e| unavailable(&e))?;
            let status = if st.ticket.is_none() { 201 } else { 200 };
            let crosses_interval = ticket.version / store::SNAPSHOT_EVERY > expected_seq / store::SNAPSHOT_EVERY;
            let append = Append {
                stream: store::stream(st.id),
                expected_seq,
                events: new_events,
                snapshot: crosses_interval.then(|| body.clone()),
                index_ops: store::index_ops(st.ticket.as_ref(), &ticket),
                idempotency: Some((
                    meta.idempotency.clone(),
                    IdempotencyRecord {
                        request_hash: meta.request_hash,
                        status,
                        response: StoredResponse::StreamState { stream: store::stream(st.id), seq: ticket.version },
                        created_ms: now_ms,
                    },
                )),
            };
            match self.deps.writer.append(append).await {
                Ok(_) => {
                    let from = st.ticket.as_ref().map_or("NONE", |t| t.state.as_str());
                    if from != ticket.state.as_str() {
                        metrics::counter!("dispatch_ticket_transitions_total", "from" => from, "to" => ticket.state.as_str())
                            .increment(1);
                    }
                    st.ticket = Some(ticket);
                    return Ok(CommandOutcome { status, body, replayed: false });
                }
                Err(AppendError::SequenceConflict { .. }) => {
                    st.ticket = store::load(&self.deps.log, st.id).map_err(|e| unavailable(&e))?;
                }
                Err(AppendError::IdempotencyKeyExists(stored)) => return self.replay(stored, &meta.request_hash),
                Err(e) => return Err(unavailable(&e)),
            }
        }
        Err(CommandError::Unavailable("ticket kept changing underneath the command; retry".into()))
    }

    /// The first answer to a retried request, or a conflict if the request differs.
    fn replay(&self, stored: IdempotencyRecord, request_hash: &Hash) -> Result<CommandOutcome, CommandError> {
        if &stored.request_hash != request_hash {
            metrics::counter!("dispatch_idempotency_conflicts_total").increment(1);
            return Err(CommandError::IdempotencyKeyReused);
        }
        let body = match stored.response {
            StoredResponse::Body(body) => body,
            StoredResponse::StreamState { stream, seq } => {
                let unavailable =
                    |e: &dyn std::fmt::Display| CommandError::Unavailable(format!("replaying {stream}#{seq}: {e}"));
                let id = store::id_of(&stream).ok_or_else(|| unavailable(&"not a ticket stream"))?;
                let ticket = store::load_at(&self.deps.log, id, seq).map_err(|e| unavailable(&e))?;
                let ticket = ticket.ok_or_else(|| unavailable(&"no such events"))?;
                serde_json::to_vec(&ticket).map_err(|e| unavailable(&e))?
            }
        };
        metrics::counter!("dispatch_idempotency_replays_total").increment(1);
        Ok(CommandOutcome { status: stored.status, body, replayed: true })
    }
}
