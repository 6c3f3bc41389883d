//! The command path, written once: decide → append (events, snapshot, indexes and
//! idempotency record in one fsynced transaction, retried on a sequence conflict) →
//! apply → outcome. Every entity's actor runs exactly this.

use std::fmt;
use std::sync::Arc;

use storage::{
    Append, AppendError, EventRecord, Hash, IdempotencyKey, IdempotencyRecord, IndexOp, Log, LogWriter, NewEvent,
    StorageError, StoredResponse,
};

use super::clock::{Clock, Ids};
use super::entity::{At, Context, Entity};
use super::origin::Origin;

/// What every command needs from the node: the log, its writer, the clock and ids.
#[derive(Clone)]
pub struct Kernel {
    pub log: Log,
    pub writer: LogWriter,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
}

/// A command for one entity, with who asks and, for idempotent requests, the key and
/// the hash of the canonical request (a retry with the key must match it).
pub struct Request<E: Entity> {
    pub id: E::Id,
    pub command: E::Command,
    pub origin: Origin,
    pub idempotency: Option<(IdempotencyKey, Hash)>,
    /// More index changes for the same transaction (a fired timer's removal, a secret).
    pub index_ops: Vec<IndexOp>,
}

impl<E: Entity> Request<E> {
    pub fn new(id: E::Id, command: E::Command, origin: Origin) -> Self {
        Request { id, command, origin, idempotency: None, index_ops: Vec::new() }
    }
}

/// A command's durable outcome, first-time or replayed. The edges map it to their
/// own formats (an HTTP status and body, an MCP result).
#[derive(Debug, Clone)]
pub struct Outcome<E: Entity> {
    /// The state right after the command.
    pub state: E::State,
    /// The stream's sequence number after the command.
    pub seq: u64,
    /// The command brought the entity into existence.
    pub created: bool,
    /// The records the command wrote (read back when replayed; empty if it changed nothing).
    pub records: Vec<EventRecord>,
    /// Answered from an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// Why a command got no durable outcome. Nothing was written.
#[derive(Debug, Clone)]
pub enum Failure<E: Entity> {
    /// The rules refused it.
    Rejected(E::Error),
    /// The idempotency key was used before with a different request.
    KeyReused,
    /// Storage or the actor is unavailable; retry with the same key.
    Unavailable(String),
}

impl<E: Entity> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Rejected(e) => e.fmt(f),
            Failure::KeyReused => f.write_str("idempotency key was already used with a different request"),
            Failure::Unavailable(why) => write!(f, "temporarily unavailable: {why}"),
        }
    }
}

impl<E: Entity> std::error::Error for Failure<E> {}

fn unavailable<E: Entity>(e: impl fmt::Display) -> Failure<E> {
    Failure::Unavailable(e.to_string())
}

/// Why a stored entity could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{stream}: stored data does not decode: {reason}")]
    Corrupt { stream: String, reason: String },
}

impl From<LoadError> for StorageError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Storage(e) => e,
            LoadError::Corrupt { stream, reason } => {
                StorageError::Corrupt { table: "events", reason: format!("{stream}: {reason}") }
            }
        }
    }
}

/// An entity as its actor holds it: the state (None before creation) and the
/// sequence number of the stream's last event.
pub struct Loaded<E: Entity> {
    pub state: Option<E::State>,
    pub seq: u64,
}

/// The entity now: its snapshot (if the kind keeps them) plus the events after it.
pub fn load<E: Entity>(log: &Log, id: &E::Id) -> Result<Loaded<E>, LoadError> {
    let stream = E::stream(id);
    let corrupt = |e: &dyn fmt::Display| LoadError::Corrupt { stream: stream.clone(), reason: e.to_string() };
    let snapshot = E::SNAPSHOT_EVERY.map(|_| log.snapshot(&stream)).transpose()?.flatten();
    let (mut state, mut seq) = match snapshot.and_then(|(seq, bytes)| Some((seq, E::from_snapshot(&bytes)?))) {
        Some((seq, decoded)) => (Some(decoded.map_err(|e| corrupt(&e))?), seq),
        None => (None, 0),
    };
    for record in log.read_stream(&stream, seq)? {
        state = replay_one::<E>(state, id, &record).map_err(|e| corrupt(&e))?;
        seq = record.seq;
    }
    Ok(Loaded { state, seq })
}

/// The entity as it was right after event `seq`, from its events alone.
pub fn load_at<E: Entity>(log: &Log, id: &E::Id, seq: u64) -> Result<Option<E::State>, LoadError> {
    let stream = E::stream(id);
    let mut state = None;
    for record in log.read_range(&stream, 1, seq)? {
        state = replay_one::<E>(state, id, &record)
            .map_err(|e| LoadError::Corrupt { stream: stream.clone(), reason: e.to_string() })?;
    }
    Ok(state)
}

fn replay_one<E: Entity>(
    state: Option<E::State>,
    id: &E::Id,
    record: &EventRecord,
) -> Result<Option<E::State>, serde_json::Error> {
    let event: E::Event = serde_json::from_slice(&record.payload)?;
    Ok(E::apply(state, At { id, seq: record.seq, time_ms: record.time_ms }, &event))
}

/// Runs one command against `loaded` (the actor's copy, updated on success).
pub async fn execute<E: Entity>(
    kernel: &Kernel,
    deps: &E::Deps,
    loaded: &mut Loaded<E>,
    req: &Request<E>,
) -> Result<Outcome<E>, Failure<E>> {
    // A conflicting writer (a passivated twin finishing its queue, a second node
    // process) is the one reason to retry: reload and decide again.
    for _ in 0..3 {
        let cx = Context { id: &req.id, now_ms: kernel.clock.now_ms(), origin: &req.origin, ids: &*kernel.ids };
        let decided = E::decide(deps, &cx, loaded.state.as_ref(), &req.command);
        let events = match decided {
            Ok(events) if !(events.is_empty() && req.index_ops.is_empty()) => events,
            // A command that would write nothing may be a retry whose first run changed
            // the state it is checked against: its key is looked up here. One that would
            // write skips that read (a first request, the usual case, has no record); the
            // writer checks the key inside the commit and a retry is answered from the
            // record it finds (below).
            unwritten => {
                if let Some((key, hash)) = &req.idempotency
                    && let Some(stored) = kernel.log.idempotency(key).map_err(unavailable)?
                {
                    return replay(kernel, (&req.id, loaded), &stored, hash);
                }
                unwritten.map_err(Failure::Rejected)?;
                let state = loaded.state.clone().ok_or_else(|| Failure::Rejected(E::not_found()))?;
                return Ok(Outcome { state, seq: loaded.seq, created: false, records: Vec::new(), replayed: false });
            }
        };
        let (append, after) = plan(&cx, loaded, req, &events)?;
        match kernel.writer.append(append).await {
            Ok(appended) => {
                E::committed(deps, loaded.state.as_ref(), &after, &events);
                let created = loaded.state.is_none();
                loaded.seq += appended.records.len() as u64;
                loaded.state = Some(after.clone());
                let records = appended.records;
                return Ok(Outcome { state: after, seq: loaded.seq, created, records, replayed: false });
            }
            Err(AppendError::SequenceConflict { .. }) => *loaded = load(&kernel.log, &req.id).map_err(unavailable)?,
            Err(AppendError::IdempotencyKeyExists(stored)) => {
                let hash = req.idempotency.as_ref().map(|(_, h)| *h).unwrap_or_default();
                return replay(kernel, (&req.id, loaded), &stored, &hash);
            }
            Err(AppendError::Taken { key, .. }) => {
                return Err(
                    E::claim_taken(key).map_or_else(|| unavailable("uniqueness claim refused"), Failure::Rejected)
                );
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(Failure::Unavailable(format!("{} kept changing underneath the command; retry", E::KIND)))
}

/// The append for `events` and the state they lead to.
fn plan<E: Entity>(
    cx: &Context<'_, E>,
    loaded: &Loaded<E>,
    req: &Request<E>,
    events: &[E::Event],
) -> Result<(Append, E::State), Failure<E>> {
    let mut next = loaded.state.clone();
    let mut records: Vec<NewEvent> = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let before = next.as_ref().map(E::state_name);
        let at = At { id: cx.id, seq: loaded.seq + i as u64 + 1, time_ms: cx.now_ms };
        next = E::apply(next, at, event);
        let states = (before, next.as_ref().map(E::state_name));
        records.push(
            req.origin
                .event((cx.ids.next_id(), cx.now_ms), E::event_kind(event), states, event)
                .map_err(unavailable)?,
        );
    }
    let after = next.ok_or_else(|| Failure::Rejected(E::not_found()))?;
    let stream = E::stream(cx.id);
    let (first, last) = (loaded.seq + 1, loaded.seq + events.len() as u64);
    let snapshot = match E::SNAPSHOT_EVERY {
        Some(every) if last / every > loaded.seq / every => E::to_snapshot(&after).transpose().map_err(unavailable)?,
        _ => None,
    };
    let mut index_ops = req.index_ops.clone();
    index_ops.extend(E::index_ops(cx, loaded.state.as_ref(), &after, events));
    let idempotency = req.idempotency.as_ref().map(|(key, hash)| {
        let status = if loaded.state.is_none() { CREATED } else { CHANGED };
        let response = StoredResponse::Command { stream: stream.clone(), first, last };
        (key.clone(), IdempotencyRecord { request_hash: *hash, status, response, created_ms: cx.now_ms })
    });
    let append = Append { stream, expected_seq: loaded.seq, events: records, snapshot, index_ops, idempotency };
    Ok((append, after))
}

/// The idempotency record's status field: whether the command created the entity.
/// (Shaped as HTTP statuses, as records written before the kernel were.)
const CREATED: u16 = 201;
const CHANGED: u16 = 200;

/// The first answer to a retried request, rebuilt from the log; a different request
/// under the same key is refused.
fn replay<E: Entity>(
    kernel: &Kernel,
    (held, loaded): (&E::Id, &Loaded<E>),
    stored: &IdempotencyRecord,
    request_hash: &Hash,
) -> Result<Outcome<E>, Failure<E>> {
    if &stored.request_hash != request_hash {
        metrics::counter!("dispatch_idempotency_conflicts_total").increment(1);
        return Err(Failure::KeyReused);
    }
    let (stream, first, last) = match &stored.response {
        StoredResponse::Command { stream, first, last } => (stream, *first, *last),
        StoredResponse::StreamState { stream, seq } => (stream, *seq, *seq),
        // Written by a path outside the kernel (task submissions before it): the
        // answer cannot be rebuilt, so the retry is refused rather than run twice.
        StoredResponse::Body(_) => return Err(Failure::KeyReused),
    };
    let id = E::id_of(stream).ok_or_else(|| unavailable(format!("replaying {stream}: not a {} stream", E::KIND)))?;
    // A retry of the entity's latest command (the usual case) is answered from memory;
    // an older one is rebuilt from the events up to it.
    let state = match &loaded.state {
        Some(current) if *held == id && loaded.seq == last => Some(current.clone()),
        _ => load_at::<E>(&kernel.log, &id, last).map_err(unavailable)?,
    };
    let state = state.ok_or_else(|| unavailable(format!("replaying {stream}#{last}: no such events")))?;
    let records = kernel.log.read_range(stream, first, last).map_err(unavailable)?;
    metrics::counter!("dispatch_idempotency_replays_total").increment(1);
    Ok(Outcome { state, seq: last, created: stored.status == CREATED, records, replayed: true })
}

/// Runs one command without an actor: loads the entity, executes, forgets it. For
/// kinds whose commands are rare (settings, admin records); concurrent callers are
/// serialized by the log's sequence check and the retry in [`execute`].
pub async fn run_once<E: Entity>(kernel: &Kernel, deps: &E::Deps, req: &Request<E>) -> Result<Outcome<E>, Failure<E>> {
    let mut loaded = load::<E>(&kernel.log, &req.id).map_err(unavailable)?;
    execute(kernel, deps, &mut loaded, req).await
}
